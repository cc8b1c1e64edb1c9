"""The `fashion-tcn` command: parse, call the library, print, pick the exit code.

Exit codes: 0 success, 2 bad input (config, flags, data), 130 interrupted before anything was saved.
Heavy modules (TensorFlow) are imported only after the input has been validated, so mistakes are
reported in a fraction of a second.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fashion_tcn.config import (
    Config,
    ConfigError,
    load_config,
    override,
)
from fashion_tcn.data import DataError, find_data_dir, load_fashion_mnist
from fashion_tcn.flags import build_parser, config_overrides, flag_name
from fashion_tcn.rundir import RunDir
from fashion_tcn.splits import limit_notes

# what `--resume` may change: the saved model and optimizer ignore the rest, so the rest is refused
RESUMABLE = ("data.data_dir", "train.epochs", "train.early_stopping", "train.tensorboard")


def _check_resume(saved: Config, new: Config) -> None:
    """A resumed run keeps its model, data split and optimizer: only its length may change."""
    before, after = saved.to_dict(), new.to_dict()
    changed = [
        flag_name(section, key)
        for section, values in after.items()
        for key, value in values.items()
        if f"{section}.{key}" not in RESUMABLE and before[section][key] != value
    ]
    if changed:
        raise ConfigError(
            f"--resume continues the saved run as it was configured; {', '.join(changed)} "
            "cannot change (only --epochs, --early-stopping, --tensorboard, --data-dir can)"
        )


# An abseil INFO line ("I0000 00:00:1796117372.401950   19248 port.cc:153] ...") and abseil's
# note that it writes everything to stderr until it is initialised
_STARTUP_LINE = re.compile(
    r"I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] |WARNING: All log messages before absl::InitializeLog"
)


@contextlib.contextmanager
def startup_lines_dropped() -> Iterator[None]:
    """Runs the block with file descriptor 2 captured, then writes back every line that is not
    a C++ start-up line (`_STARTUP_LINE`): errors and Python warnings still reach the user."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _STARTUP_LINE.match(line)))


def _quiet_tensorflow() -> None:
    """TensorFlow's start-up and deprecation lines are not for users (errors still raise).
    TF_CPP_MIN_LOG_LEVEL silences its C++ logs but not all: where TensorFlow turns oneDNN on
    (CPUs with AVX-512, for example) it logs an INFO line while abseil, not yet initialised,
    writes every level to stderr; so Keras, and with it TensorFlow, is imported here with
    those lines dropped."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ logs, before TensorFlow loads
    with startup_lines_dropped():
        import keras  # noqa: F401  (the backend with it)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # its Python warnings (tf2onnx's)


def _check_run_dir_free(run_dir: Path | None, resume: bool) -> None:
    """What `train` would find wrong with the run directory, found before TensorFlow loads."""
    if run_dir is None:
        _check(not resume, "--resume needs --run-dir")
        return
    _check(not run_dir.exists() or run_dir.is_dir(), f"{run_dir}: exists and is not a directory")
    if resume:
        _check(run_dir.is_dir(), f"{run_dir}: no such run directory to resume")
        _check(
            RunDir(run_dir).last_file.is_file(),
            f"{run_dir}: nothing to resume (no {RunDir.last_file})",
        )
    else:
        _check(
            RunDir(run_dir).is_empty(),
            f"{run_dir}: run directory exists and is not empty; choose another --run-dir or "
            "continue it with --resume",
        )


def _check_writable(path: Path) -> None:
    """A file can be written at `path`: it is not a folder, and its nearest existing parent is."""
    _check(not path.is_dir(), f"{path}: is a directory; name a file")
    _check_parent(path)


def _check_parent(path: Path) -> None:
    """`path` can be created: its nearest existing parent is a folder (checked before slow work)."""
    parent = next(p for p in path.absolute().parents if p.exists())
    _check(parent.is_dir(), f"{path}: cannot be written, {parent} is a file, not a directory")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _train(args: argparse.Namespace) -> int:
    _check_run_dir_free(args.run_dir, args.resume)
    if args.resume:
        cfg = RunDir(args.run_dir).config()
    else:
        cfg = load_config(args.config) if args.config else Config()
    saved = cfg
    cfg = override(cfg, config_overrides(args))
    if args.resume:
        _check_resume(saved, cfg)
    if cfg.model.kind == "cnn" and cfg.data.sequence != "rows":
        print(f"note: the cnn reads the 28x28 image; --sequence {cfg.data.sequence} is ignored")
    cfg = cfg.resolved()  # cross-field checks (receptive field) before anything slow
    # bad data is reported before TensorFlow loads
    for note in limit_notes(cfg, *load_fashion_mnist(cfg.data.data_dir)):
        print(f"note: {note}")
    _quiet_tensorflow()
    from fashion_tcn.train import default_run_dir, train

    run = RunDir(args.run_dir or default_run_dir(cfg))
    code = 0
    try:
        train(cfg, run, resume=args.resume, verbose=_verbosity(args.quiet), on_model=_print_summary)
    except KeyboardInterrupt:  # finished epochs are checkpointed: test the best one anyway
        if not run.model_file.is_file():
            if not args.resume:
                _discard(run)
            raise
        doing = "keeping" if args.no_test else "testing"
        print(f"\ninterrupted: {doing} the best epoch so far (continue with --resume)")
        code = 130  # stopped, not finished
    _test_and_report(run, cfg.data.data_dir, test=not args.no_test, report=not args.no_report)
    shown = "" if args.no_report else f"  (report: {run.report_file})"
    print(f"run directory: {run}{shown}")
    return code


def _test_and_report(
    run: RunDir,
    data_dir: str | None,
    explain_per_class: int = 10,
    other_data: bool = False,
    test: bool = True,
    report: bool = True,
) -> None:
    """Test a run's best model once (unless `test` is off: `train --no-test`), print the
    metrics, (re)draw its page."""
    from fashion_tcn.evaluate import evaluate_run, format_metrics
    from fashion_tcn.report import build_report

    if test:
        metrics = evaluate_run(
            run, data_dir, explain_per_class=explain_per_class, other_data=other_data
        )
        print(format_metrics(metrics))
    if report:
        build_report([run.path])


def _discard(run: RunDir) -> None:
    """Remove what a run stopped before its first checkpoint wrote (settings, a summary, maybe
    a partial history): a folder no re-run and no `--resume` would accept, holding no work."""
    for path in (run.config_file, run.data_file, run.summary_file, run.history_file):
        path.unlink(missing_ok=True)
    run.permutation_file.unlink(missing_ok=True)
    if run.is_empty() and run.path.is_dir():
        run.path.rmdir()


def _verbosity(quiet: bool) -> int:
    """Keras fit verbosity: a progress bar on a terminal, one line per epoch in a log file."""
    if quiet:
        return 0
    return 1 if sys.stdout.isatty() else 2


def _print_summary(model) -> None:
    model.summary()
    layer = next((layer for layer in model.layers if hasattr(layer, "receptive_field")), None)
    if layer is not None:
        print(f"receptive field: {layer.receptive_field} steps")


def _evaluate(args: argparse.Namespace) -> int:
    run = _run_dir(args.run_dir)
    if args.data_dir is not None:
        find_data_dir(args.data_dir)
    if args.explain_per_class < 1:
        raise ConfigError("--explain-per-class must be >= 1")
    _quiet_tensorflow()
    _test_and_report(
        run, args.data_dir, args.explain_per_class, args.other_data, report=not args.no_report
    )
    return 0


def _run_dir(path: Path) -> RunDir:
    _check(path.is_dir(), f"{path}: not a run directory (no such folder)")
    return RunDir(path).require()


def _predict(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise ConfigError("--top must be >= 1")
    _run_dir(args.run_dir)
    _quiet_tensorflow()

    import numpy as np

    from fashion_tcn.predict import Predictor, load_inputs, top_k

    items = load_inputs(args.inputs)
    predictor = Predictor(args.run_dir, calibrated=args.calibrated)
    if args.stream and not predictor.can_stream():
        raise ConfigError(
            f"{args.run_dir}: --stream needs a TCN model, this is {predictor.cfg.model.kind}"
        )
    good = [item for item in items if item.error is None]
    probs = predictor.probabilities(np.stack([i.image for i in good])) if good else []
    results = dict(zip((id(i) for i in good), probs, strict=True))
    records = []
    for item in items:
        if item.error is not None:
            records.append({"input": item.name, "error": item.error})
            continue
        record = {"input": item.name, "top": top_k(results[id(item)], args.top)}
        if args.stream:
            record["stream"] = predictor.stream(item.image)
        records.append(record)

    def lines(record: dict) -> list[str]:
        top = "  ".join(f"{r['class']} {r['probability']:.1%}" for r in record["top"])
        return [f"{record['input']}: {top}"] + [
            f"  after {point['fraction']:>4.0%} ({point['steps']:>3} steps): "
            f"{point['class']} {point['probability']:.1%}"
            for point in record.get("stream", [])
        ]

    return _print_records(records, args.json, lines)


def _print_records(records: list[dict], as_json: bool, lines) -> int:
    """Per-input results: JSON or `lines(record)` on stdout, one stderr line per bad input;
    exit 2 if there was one."""
    if as_json:
        print(json.dumps(records, indent=2))
    for record in records:
        if "error" in record:
            print(f"fashion-tcn: error: {record['error']}", file=sys.stderr)
        elif not as_json:
            print("\n".join(lines(record)))
    return 2 if any("error" in r for r in records) else 0


def _explain(args: argparse.Namespace) -> int:
    _run_dir(args.run_dir)
    _quiet_tensorflow()
    from fashion_tcn.predict import explain_inputs, load_inputs

    records = explain_inputs(args.run_dir, load_inputs(args.inputs), args.out)

    def lines(record: dict) -> list[str]:
        steps = ", ".join(map(str, record["top_steps"]))
        unit = "steps" if record["sequence"] == "permuted" else record["sequence"]
        return [
            f"{record['input']}: {record['class']} {record['probability']:.1%}; "
            f"{unit} that drove it most: {steps}; figure {record['figure']}"
        ]

    return _print_records(records, args.json, lines)


def _export(args: argparse.Namespace) -> int:
    _run_dir(args.run_dir)
    if args.out is not None:
        _check_parent(args.out)
    _quiet_tensorflow()
    from fashion_tcn.export import export

    print(f"{args.format}: {export(args.run_dir, args.format, args.out)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    if args.out is None and len(args.run_dirs) > 1:
        raise ConfigError("a report on several runs needs -o OUT")
    if args.out is not None:
        _check_writable(args.out)
    from fashion_tcn.report import build_report
    from fashion_tcn.runview import missing_files

    try:
        for run_dir in args.run_dirs:
            for name in missing_files(run_dir):
                print(
                    f"warning: {run_dir / name} is missing; the report shows what it can",
                    file=sys.stderr,
                )
        out = build_report(args.run_dirs, args.out)
    except ValueError as error:  # "RUN_DIR: not a run directory"
        raise ConfigError(str(error)) from None
    print(f"report: {out}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import socket

    _run_dir(args.run_dir)
    _check(0 <= args.port <= 65535, f"--port {args.port}: not a port (0..65535)")
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("serve needs its extra: pip install -e '.[cpu,serve]'") from None
    try:  # bound before the slow load, so a taken port is said at once
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        # IPPROTO_TCP named, or asyncio does not set TCP_NODELAY on the connections and every
        # kept-alive answer waits 40 ms for a delayed ACK (Nagle)
        listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((args.host, args.port))
        listener.listen(128)  # from now on a client waits in the backlog, never refused
    except (OSError, OverflowError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ConfigError(f"{args.host}:{args.port}: cannot listen there ({reason})") from None
    _quiet_tensorflow()
    from fashion_tcn.serve import build_app, leave_a_core

    leave_a_core()
    app = build_app(args.run_dir)
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {args.run_dir} at http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="websockets-sansio"))
    server.run(sockets=[listener])
    return 0


def _data(args: argparse.Namespace) -> int:
    from fashion_tcn.data import load_fashion_mnist

    for name, split in zip(("train", "test"), load_fashion_mnist(args.data_dir), strict=True):
        print(f"{name}: {len(split)} images")
        for key, value in split.files.items():
            print(f"  {key}: {value}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    """Check everything a worker would trip over, run the workers, then name (and unless
    `--no-test`, test) the best trial."""
    base, space = _sweep_space(args)
    url = _sweep_storage(args)
    print(
        f"study {args.study!r} in {url}: {args.trials} trials, {args.jobs} worker(s), "
        f"parameters {', '.join(p.name for p in space)}"
    )
    from fashion_tcn import sweep

    worker = (base, space, args.trials, args.out, url, args.study, args.heartbeat, _print_trial)
    _run_workers(sweep.run_worker, worker, args.jobs)
    study = sweep.open_study(sweep.make_storage(url, args.heartbeat), args.study)
    return _print_sweep(
        sweep.finish(study, args.out, test=not args.no_test, report=not args.no_report)
    )


def _sweep_space(args: argparse.Namespace) -> tuple[Config, list]:
    """The base config (file, then flags) and the searched parameters: those no flag pins."""
    if args.trials < 1 or args.jobs < 1:
        raise ConfigError("--trials and --jobs must be >= 1")
    flags = config_overrides(args)
    base = override(load_config(args.config) if args.config else Config(), flags)
    from fashion_tcn.space import DEFAULT_SPACE, load_space

    space = load_space(args.space or DEFAULT_SPACE, base)
    find_data_dir(base.data.data_dir)
    pinned = {dest.split(".")[1] for dest, value in flags.items() if value is not None}
    return base, [p for p in space if p.name not in pinned]


def _sweep_storage(args: argparse.Namespace) -> str:
    """The study's storage URL, checked before any trial; a refused one leaves no empty --out."""
    _quiet_tensorflow()
    from fashion_tcn import sweep

    _check(not args.out.exists() or args.out.is_dir(), f"{args.out}: exists and is not a directory")
    created = not args.out.exists()
    url = sweep.storage_url(args.storage, args.out)
    if args.storage is None:  # the default study database lives in the output folder
        args.out.mkdir(parents=True, exist_ok=True)
    try:
        sweep.check_storage(url, args.heartbeat)
    except ConfigError:
        if created:
            shutil.rmtree(args.out, ignore_errors=True)
        raise
    args.out.mkdir(parents=True, exist_ok=True)
    return url


def _run_workers(target, worker: tuple, jobs: int) -> None:
    """One worker in this process, or `jobs` spawned ones sharing the study's storage."""
    if jobs == 1:
        target(*worker)
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
    processes = [context.Process(target=target, args=worker) for _ in range(jobs)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()


def _print_sweep(result: dict) -> int:
    from fashion_tcn import sweep

    print(sweep.markdown_table(result["rows"]))
    for name, where in result["plots"].items():
        print(f"{name}: {where}")
    if result["best"] is None:
        print("no trial completed: nothing to test")
        return 1
    metrics = result["metrics"]
    tested = (
        f"test accuracy {metrics['accuracy']:.4f} ({metrics['test_set']} test set)"
        if metrics
        else f"not tested (fashion-tcn evaluate {result['best_run']})"
    )
    print(f"best trial {result['best']}: val accuracy {result['val_accuracy']:.4f}, {tested}")
    print(
        f"best config: {result['best_config']} (fashion-tcn train --config {result['best_config']})"
    )
    if result["report"] is not None:
        print(f"report: {result['report']}")
    return 0


def _print_trial(trial) -> None:
    value = "" if trial.value is None else f" val_accuracy={trial.value:.4f}"
    note = trial.user_attrs.get("reason", "")
    print(
        f"trial {trial.number}: {trial.state.name}{value} {trial.params} {note}".rstrip(),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {
        "train": _train,
        "evaluate": _evaluate,
        "data": _data,
        "sweep": _sweep,
        "predict": _predict,
        "explain": _explain,
        "export": _export,
        "report": _report,
        "serve": _serve,
    }[args.command]
    try:
        return command(args)
    except (ConfigError, DataError) as error:
        print(f"fashion-tcn: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fashion-tcn: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as error:  # installed without a Keras backend
        if error.name not in ("tensorflow", "jax", "torch"):
            raise
        print(
            f"fashion-tcn: error: Keras's backend {error.name!r} is not installed: "
            "pip install 'fashion-tcn[cpu]' (TensorFlow), or set KERAS_BACKEND to one you have",
            file=sys.stderr,
        )
        return 2
    except OSError as error:  # a full disk, a folder that cannot be written
        where = f"{error.filename}: " if error.filename else ""
        print(f"fashion-tcn: error: {where}{error.strerror or error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
