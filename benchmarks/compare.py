"""Train model x sequence-mode configs with one budget and seeds; print one comparison table.

    python benchmarks/compare.py tcn:rows lstm:rows gru:rows cnn:rows --epochs 10
    python benchmarks/compare.py tcn:rows gru:rows --seeds 0,1,2 --target-val 0.9 --epochs 20
    python benchmarks/compare.py tcn:pixels lstm:pixels gru:pixels --epochs 2 --limit-train 10000
    python benchmarks/compare.py tcn:rows gru:rows --seeds 0,1,2 \\
        --choose lr=1e-3,3e-3 --choose clipnorm=none,1 --choose-epochs 2

Each entry is MODEL:SEQUENCE, optionally with flags for that entry only after a second colon
(`tcn:rows:--augment strong --epochs 40`). Flags after the entries apply to every entry, exactly as
`fashion-tcn train` takes them. Each entry trains once per `--seeds` seed, into
OUT/<model>-<sequence>[-N]-s<seed>; a run directory that already has metrics.json is read, not
retrained (its config.yaml, history.csv and metrics.json suffice), so an interrupted comparison
resumes (a run stopped mid-way goes on with `fashion-tcn train --resume`).
`--choose FLAG=V1,V2` (repeatable; `none` leaves the flag out) first trains every combination for
`--choose-epochs` on the first seed, into OUT/<model>-<sequence>-choose/, and each entry keeps the
one with the best validation accuracy (the test set is never looked at).
Writes OUT/compare.md, OUT/compare.csv and OUT/compare.png (validation accuracy per epoch, mean
and band over the seeds, every entry together) and prints the Markdown table:
- test accuracy as mean +- std over the seeds (sample std; n = number of seeds), best validation
  accuracy likewise;
- cost: parameters, mean s/epoch and training samples/s (as measured, so only comparable between
  runs on the same machine at the same time), and the wall time (training and validation) until
  validation accuracy first reaches `--target-val`, mean over the seeds that reach it;
- streaming: FLOPs and kept numbers per new step for one stream (`fashion_tcn.stream.step_cost`;
  the CNN reads whole images and has none).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import sys
from pathlib import Path

from fashion_tcn.cli import main as fashion_tcn
from fashion_tcn.config import MODEL_KINDS

COLUMNS = [
    "model",
    "sequence",
    "test accuracy",
    "best val accuracy",
    "seeds",
    "parameters",
    "epochs",
    "s/epoch",
    "samples/s",
    "time to target val",
    "stream FLOPs/step",
    "stream state",
    "test set",
    "chosen",
    "command",
]


def _history(run_dir: Path) -> list[dict]:
    with (run_dir / "history.csv").open() as f:
        return list(csv.DictReader(f))


def time_to(history: list[dict], target: float) -> float | None:
    """Seconds of epochs (training and validation) until val_accuracy first reaches target."""
    spent = 0.0
    for row in history:
        spent += float(row["epoch_time"])
        if float(row["val_accuracy"]) >= target:
            return spent
    return None


def train_seed(args: list[str], run_dir: Path, seed: int) -> dict:
    """Train one seed, or go on with a run an interruption left behind (`--resume`)."""
    if not (run_dir / "metrics.json").is_file():
        if (run_dir / "last.keras").is_file():
            command = ["train", "--run-dir", str(run_dir), "--resume", "--quiet"]
        else:
            command = ["train", *args, "--seed", str(seed), "--run-dir", str(run_dir), "--quiet"]
        code = fashion_tcn(command)
        if code != 0:
            raise SystemExit(f"compare: {run_dir} failed with exit code {code}")
    return json.loads((run_dir / "metrics.json").read_text())


def _mean_std(values: list[float], scale: float = 100.0, unit: str = "%") -> str:
    mean = scale * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2f}{unit}"
    return f"{mean:.2f} ± {scale * statistics.stdev(values):.2f}{unit}"


def streaming_cost(run_dir: Path) -> dict | None:
    """From the run's config, so a finished run's config.yaml, history.csv and metrics.json are
    all a comparison needs again (they are small enough to keep with the results)."""
    import numpy as np

    from fashion_tcn.config import load_config
    from fashion_tcn.models import build_classifier
    from fashion_tcn.stream import step_cost

    cfg = load_config(run_dir / "config.yaml")
    permutation = np.arange(784) if cfg.data.sequence == "permuted" else None
    return step_cost(build_classifier(cfg, permutation=permutation))


def _grid_flags(choose: list[tuple[str, list[str]]]) -> list[list[str]]:
    """Every combination of the `--choose` values as train flags (`none` = flag left out)."""
    combos: list[list[str]] = [[]]
    for flag, values in choose:
        option = [[] if v == "none" else [f"--{flag}", v] for v in values]
        combos = [c + o for c in combos for o in option]
    return combos


def choose(
    args: list[str], out: Path, seed: int, grid: list[tuple[str, list[str]]], epochs: int
) -> tuple[list[str], str]:
    """The `--choose` combination with the best validation accuracy after `epochs`, trained on
    one seed; and a note of every combination's figure."""
    scores = []
    for flags in _grid_flags(grid):
        name = "_".join(f.lstrip("-") for f in flags) or "defaults"
        run = out.with_name(f"{out.name}-choose") / f"{name}-s{seed}"
        train_seed([*args, *flags, "--epochs", str(epochs)], run, seed)
        best = max(float(row["val_accuracy"]) for row in _history(run))
        scores.append((best, flags))
    best_flags = max(scores, key=lambda s: s[0])[1]
    note = "; ".join(f"{' '.join(f) or 'defaults'}: {v:.2%}" for v, f in scores)
    return best_flags, f"{' '.join(best_flags) or 'defaults'} (val after {epochs} ep.: {note})"


def run_entry(
    entry: str,
    shared: list[str],
    out: Path,
    seeds: list[int],
    target: float,
    grid: list[tuple[str, list[str]]] | None = None,
    grid_epochs: int = 2,
) -> dict:
    model, sequence, *extra = entry.split(":", 2)
    args = [
        "--model",
        model,
        "--sequence",
        sequence,
        *shared,
        *shlex.split(extra[0] if extra else ""),
    ]
    chosen = ""
    if grid:
        flags, chosen = choose(args, out, seeds[0], grid, grid_epochs)
        args += flags
    runs = [out.with_name(f"{out.name}-s{seed}") for seed in seeds]
    metrics = [train_seed(args, run, seed) for run, seed in zip(runs, seeds, strict=True)]
    histories = [_history(run) for run in runs]
    reached = [t for t in (time_to(h, target) for h in histories) if t is not None]
    cost = streaming_cost(runs[0])
    return {
        "_curves": [[float(row["val_accuracy"]) for row in h] for h in histories],
        "model": model,
        "sequence": metrics[0]["sequence"],
        "test accuracy": _mean_std([m["accuracy"] for m in metrics]),
        "best val accuracy": _mean_std(
            [max(float(row["val_accuracy"]) for row in h) for h in histories]
        ),
        "seeds": ",".join(map(str, seeds)),
        "parameters": f"{metrics[0]['parameters']:,}",
        "epochs": metrics[0]["epochs"],
        "s/epoch": f"{statistics.fmean(m['mean_epoch_time'] for m in metrics):.1f}",
        "samples/s": f"{statistics.fmean(m['mean_samples_per_s'] for m in metrics):.0f}",
        "time to target val": (
            f"{statistics.fmean(reached):.0f} s to {target:.1%}"
            + ("" if len(reached) == len(runs) else f" ({len(reached)} of {len(runs)} seeds)")
            if reached
            else f"not reached ({target:.1%})"
        ),
        "stream FLOPs/step": f"{cost['flops']:,}" if cost else "n/a",
        "stream state": f"{cost['state']:,}" if cost else "n/a",
        "test set": metrics[0]["test_set"],
        "chosen": chosen or "n/a",
        "command": f"`fashion-tcn train {shlex.join(args)} --seed S`",
    }


def plot_curves(rows: list[dict], path: Path) -> Path:
    """Validation accuracy per epoch: the mean over each entry's seeds, with a band of one
    standard deviation either side."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for row in rows:
        curves = row["_curves"]
        steps = min(len(c) for c in curves)
        values = np.array([c[:steps] for c in curves])
        epochs = np.arange(1, steps + 1)
        mean = values.mean(axis=0)
        ax.plot(epochs, mean, label=f"{row['model']} {row['sequence']} ({len(curves)} seeds)")
        if len(curves) > 1:
            spread = values.std(axis=0, ddof=1)
            ax.fill_between(epochs, mean - spread, mean + spread, alpha=0.2)
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy, mean ± std")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=120)
    return path


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def is_entry(arg: str) -> bool:
    """`tcn:rows`, `lstm:pixels:--units 64`; never the value of a flag."""
    return ":" in arg and arg.split(":", 1)[0] in MODEL_KINDS


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds, got {text!r}") from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be distinct and >= 0, got {text!r}")
    return seeds


def _choice(text: str) -> tuple[str, list[str]]:
    flag, sep, values = text.partition("=")
    if not sep or not flag or not values:
        raise argparse.ArgumentTypeError(f"expected FLAG=V1,V2 (e.g. lr=1e-3,3e-3), got {text!r}")
    return flag.lstrip("-"), values.split(",")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        usage="%(prog)s MODEL:SEQUENCE[:FLAGS] ... [--out OUT] [--seeds 0,1,2] "
        "[--target-val 0.9] [fashion-tcn train flags]",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--seeds", type=_seeds, default=[0], help="one run per seed (0)")
    parser.add_argument(
        "--target-val", type=float, default=0.9, help="validation accuracy to time (0.9)"
    )
    parser.add_argument(
        "--choose",
        type=_choice,
        action="append",
        default=[],
        metavar="FLAG=V1,V2",
        help="train flag to choose per entry on validation; repeatable",
    )
    parser.add_argument(
        "--choose-epochs", type=int, default=2, help="epochs of each --choose run (2)"
    )
    # entries are told apart by their form, so they may stand before or after the shared flags
    # (argparse alone would take the value of an unknown flag, `--epochs 10`, for an entry)
    args, rest = parser.parse_known_args(argv)
    entries = [arg for arg in rest if is_entry(arg)]
    shared = [arg for arg in rest if not is_entry(arg)]
    if not entries:
        parser.error(f"no MODEL:SEQUENCE entries (MODEL is one of {', '.join(MODEL_KINDS)})")
    if "--seed" in shared:
        parser.error("use --seeds, not --seed: each entry trains once per seed")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, seen = [], {}
    for entry in entries:
        name = "-".join(entry.split(":", 2)[:2])
        seen[name] = seen.get(name, 0) + 1
        suffix = f"-{seen[name]}" if seen[name] > 1 else ""
        out = args.out / f"{name}{suffix}"
        rows.append(
            run_entry(
                entry, shared, out, args.seeds, args.target_val, args.choose, args.choose_epochs
            )
        )
        print(f"compare: {entry}: {rows[-1]['test accuracy']}", flush=True)
    plot_curves(rows, args.out / "compare.png")
    for row in rows:
        del row["_curves"]
    table = markdown(rows)
    (args.out / "compare.md").write_text(table)
    with (args.out / "compare.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
