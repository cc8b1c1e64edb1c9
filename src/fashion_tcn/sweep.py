"""Hyper-parameter search with Optuna: every trial is a normal training run, scored on validation.

The search space comes from space.py. The study
lives in an Optuna storage: a SQLite file by default, or any SQLAlchemy URL (PostgreSQL) that
workers on many machines share. The test set is touched once, for the best trial, at the end.
"""

from __future__ import annotations

import contextlib
import csv
import os
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import optuna
import sqlalchemy

from fashion_tcn.config import Config, ConfigError, override, save_config
from fashion_tcn.evaluate import evaluate_run
from fashion_tcn.files import atomic_path, write_text
from fashion_tcn.report import build_report
from fashion_tcn.rundir import RunDir
from fashion_tcn.space import Param, to_overrides
from fashion_tcn.train import train

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# the CLI prints each trial, with the reason a trial failed; Optuna would add a traceback
optuna.logging.set_verbosity(optuna.logging.ERROR)


class PruningCallback(keras.callbacks.Callback):
    """Reports validation accuracy each epoch and stops a trial the pruner gives up on.

    The step reported is the percentage of the trial's schedule done, not the epoch: trials
    of 5 and 20 epochs decay their cosine learning rate at different paces, and epoch 2 of a
    20-epoch trial is compared with epoch 2 of a 5-epoch one otherwise (and pruned for being
    on a longer schedule). At equal fractions the pruner compares like with like."""

    def __init__(self, trial: optuna.Trial, epochs: int):
        super().__init__()
        self.trial = trial
        self.epochs = epochs
        self.pruned_at: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        self.trial.report(float(logs["val_accuracy"]), schedule_percent(epoch, self.epochs))
        if self.trial.should_prune():
            self.pruned_at = epoch
            self.model.stop_training = True


def schedule_percent(epoch: int, epochs: int) -> int:
    """How much of an `epochs`-long schedule is done after 0-based `epoch`, in percent."""
    return round(100 * (epoch + 1) / epochs)


def make_pruner() -> optuna.pruners.BasePruner:
    """Median pruning from a quarter of the schedule on, once 3 trials have finished."""
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=25)


def storage_url(storage: str | None, out_dir: Path) -> str:
    return storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"


def make_storage(url: str, heartbeat: int = 60) -> optuna.storages.RDBStorage:
    """Optuna beats for every running trial; a worker that dies mid-trial has its trial failed
    by the others once its heartbeat is `2 * heartbeat` seconds old, and that trial is tried
    once more with the same parameters (Optuna's RetryHeartbeatStaleTrialCallback)."""

    def storage() -> optuna.storages.RDBStorage:
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=heartbeat,
            grace_period=2 * heartbeat,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(1),
        )

    for _ in range(2):
        try:
            return storage()
        except sqlalchemy.exc.DBAPIError:
            # two workers creating a new study database at once: one loses the race to create
            # the tables or write the schema version (tests/test_sweep.py saw it on SQLite and
            # on PostgreSQL); a moment later the tables exist
            time.sleep(1.0)
    return storage()


def check_storage(url: str, heartbeat: int = 60) -> optuna.storages.RDBStorage:
    """Open the study storage once, before any worker starts or any folder is made, so that a
    malformed URL, an unreachable database or a missing folder is one line, not a traceback."""
    shown = url
    with contextlib.suppress(Exception):  # never print a password
        shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise ConfigError(f"--storage {shown}: folder {folder} does not exist")
    try:
        return make_storage(url, heartbeat)
    except Exception as error:  # SQLAlchemy's URL, driver and connection errors
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise ConfigError(f"--storage {shown}: cannot open the study storage ({reason})") from None


def open_study(storage: optuna.storages.RDBStorage, name: str) -> optuna.Study:
    """Create the study, or join it when it exists (another worker's, or an earlier run's)."""
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        load_if_exists=True,
        pruner=make_pruner(),
        sampler=optuna.samplers.TPESampler(),  # unseeded: parallel workers must not agree
    )


# what counts toward --trials: a running trial will finish (or, its worker dead, be retried)
_COUNTED = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.RUNNING,
)


def run_worker(
    base: Config,
    space: list[Param],
    trials: int,
    out_dir: Path,
    url: str,
    name: str,
    heartbeat: int = 60,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> None:
    """Run trials until the study holds `trials` finished or running ones (Optuna's
    MaxTrialsCallback); workers on other machines share the count through the storage."""
    study = open_study(make_storage(url, heartbeat), name)
    optuna.storages.fail_stale_trials(study)  # trials of workers that died
    if len(study.get_trials(deepcopy=False, states=_COUNTED)) >= trials:
        return  # optimize runs one trial before its callbacks can stop it
    callbacks: list[Callable] = [optuna.study.MaxTrialsCallback(trials, states=_COUNTED)]
    if on_trial is not None:
        callbacks.append(lambda _, trial: on_trial(trial))
    study.optimize(
        lambda trial: _objective(trial, base, space, out_dir),
        catch=(Exception,),  # a failed trial must not end the study; its reason is kept
        callbacks=callbacks,
    )


def _objective(trial: optuna.Trial, base: Config, space: list[Param], out_dir: Path) -> float:
    """One training run on the trial's parameters: its best validation accuracy."""
    params = {p.name: p.suggest(trial) for p in space}
    run_dir = out_dir / "trials" / f"trial-{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    try:
        cfg = override(base, to_overrides(params)).resolved()
    except ConfigError as error:  # e.g. a receptive field too short for the sequence
        trial.set_user_attr("reason", str(error))
        raise optuna.TrialPruned(str(error)) from None
    pruner = PruningCallback(trial, cfg.train.epochs)
    try:
        run = train(cfg, run_dir, verbose=0, callbacks=[pruner])
    except Exception as error:
        trial.set_user_attr("reason", f"{type(error).__name__}: {error}".splitlines()[0])
        raise
    if pruner.pruned_at is not None:
        trial.set_user_attr("reason", f"pruned after epoch {pruner.pruned_at + 1}")
        raise optuna.TrialPruned()
    return run.best_val_accuracy()


def results_table(study: optuna.Study) -> list[dict]:
    """Every trial, best validation accuracy first, with its parameters."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "val_accuracy": None if t.value is None else round(t.value, 4),
                **t.params,
                "note": t.user_attrs.get("reason")
                or ("its worker stopped beating; retried" if t.state.name == "FAIL" else ""),
            }
        )
    rows.sort(key=lambda r: (r["val_accuracy"] is None, -(r["val_accuracy"] or 0), r["trial"]))
    return rows


def markdown_table(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_table(rows: list[dict], out_dir: Path) -> tuple[Path, Path]:
    with atomic_path(out_dir / "trials.csv") as partial, partial.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
    write_text(out_dir / "trials.md", markdown_table(rows))
    return out_dir / "trials.csv", out_dir / "trials.md"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "/")


def write_plots(study: optuna.Study, out_dir: Path) -> dict[str, str]:
    """Optimization history, parameter importances, score vs lr and batch size, as PNG.

    Returns {plot name: path or the reason it was skipped (e.g. too few finished trials)}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    names = {p for t in study.trials for p in t.params}
    plots = {
        "optimization_history": lambda: optuna_plots.plot_optimization_history(study),
        "param_importances": lambda: optuna_plots.plot_param_importances(study),
        "score_vs_lr_batch": lambda: optuna_plots.plot_slice(
            study, params=[p for p in ("lr", "batch_size") if p in names] or None
        ),
    }
    written = {}
    for name, draw in plots.items():
        try:
            axes = draw()
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            figure.set_size_inches(9, 5)
            with atomic_path(out_dir / f"{name}.png") as partial:
                figure.savefig(partial, dpi=100, bbox_inches="tight")
            plt.close(figure)
            written[name] = str(out_dir / f"{name}.png")
        except Exception as error:  # Optuna refuses plots it has too little data for
            written[name] = (
                f"skipped: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
            )
    return written


def finish(study: optuna.Study, out_dir: Path, test: bool = True, report: bool = True) -> dict:
    """Table, plots, best config, the one test-set evaluation of the best trial (unless `test`
    is off: metrics None) and (unless `report` is off) the page of every completed trial."""
    rows = results_table(study)
    write_table(rows, out_dir)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return {"rows": rows, "plots": {}, "best": None}
    plots = write_plots(study, out_dir)
    best = study.best_trial
    run_dir = Path(best.user_attrs["run_dir"])
    save_config(RunDir(run_dir).config(), out_dir / "best.yaml")
    metrics = evaluate_run(RunDir(run_dir)) if test else None
    # the best run (tested) first, then every completed trial's validation curves beside it
    others = [Path(t.user_attrs["run_dir"]) for t in sorted(complete, key=lambda t: -t.value)]
    page = (
        build_report([run_dir, *[p for p in others if p != run_dir]], out_dir / "report.html")
        if report
        else None
    )
    return {
        "report": page,
        "rows": rows,
        "plots": plots,
        "best": best.number,
        "best_config": out_dir / "best.yaml",
        "best_run": run_dir,
        "val_accuracy": best.value,
        "metrics": metrics,
    }
