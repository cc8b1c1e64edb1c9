"""Many trainings at once on one machine, each stopped by a time limit, summarised as one table.

    python benchmarks/gpu_runs.py --limit 420 --seeds 0,1,2 --out runs/gpu \\
        "rows-encoder=--config configs/rows-encoder.yaml" \\
        "pixels-wide=--config configs/pixels-wide.yaml --epochs 60"

Made for a lent GPU with minutes to spend: every ENTRY (NAME=fashion-tcn train flags) trains once
per seed, all as parallel processes, each under `timeout -s INT LIMIT`: at the limit the run
stops as after Ctrl-C, tests its best epoch so far and writes its metrics (a run still busy
`--grace` seconds later is killed). With Keras on JAX set `XLA_PYTHON_CLIENT_PREALLOCATE=false`,
so the processes share the GPU's memory. Each run lands in OUT/<name>-s<seed>/; OUT/summary.md
and OUT/summary.csv hold, per entry, the seeds that finished, test and best validation accuracy
(mean ± sample std), the epochs run and the mean seconds per epoch. The test set decides nothing
here: choose between entries on the validation column.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

COLUMNS = ["entry", "seeds", "test accuracy", "best val accuracy", "epochs", "s/epoch", "command"]


def _entry(text: str) -> tuple[str, str]:
    name, sep, flags = text.partition("=")
    if not sep or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NAME=FLAGS, got {text!r}")
    return name, flags


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds, got {text!r}") from None


def start(name: str, flags: str, seed: int, out: Path, limit: int, grace: int) -> subprocess.Popen:
    run_dir = out / f"{name}-s{seed}"
    command = [
        "timeout", "--preserve-status", "-s", "INT", "-k", str(grace), str(limit),
        sys.executable, "-m", "fashion_tcn.cli", "train", *shlex.split(flags),
        "--seed", str(seed), "--run-dir", str(run_dir), "--quiet",
    ]  # fmt: skip
    log = (out / f"{name}-s{seed}.log").open("w")
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2f}%"
    return f"{mean:.2f} ± {100 * statistics.stdev(values):.2f}%"


def summarise(name: str, flags: str, seeds: list[int], out: Path) -> dict:
    tests, vals, epochs, times, done = [], [], [], [], []
    for seed in seeds:
        run = out / f"{name}-s{seed}"
        if not (run / "metrics.json").is_file():
            continue
        metrics = json.loads((run / "metrics.json").read_text())
        with (run / "history.csv").open() as f:
            history = list(csv.DictReader(f))
        done.append(str(seed))
        tests.append(metrics["accuracy"])
        vals.append(max(float(row["val_accuracy"]) for row in history))
        epochs.append(len(history))
        times.append(statistics.fmean(float(row["epoch_time"]) for row in history))
    return {
        "entry": name,
        "seeds": ",".join(done) or "none finished",
        "test accuracy": _mean_std(tests),
        "best val accuracy": _mean_std(vals),
        "epochs": "/".join(map(str, epochs)) or "-",
        "s/epoch": f"{statistics.fmean(times):.1f}" if times else "-",
        "command": f"`fashion-tcn train {flags} --seed S`",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("entries", nargs="+", type=_entry, metavar="NAME=FLAGS")
    parser.add_argument("--seeds", type=_seeds, default=[0, 1, 2])
    parser.add_argument("--limit", type=int, default=420, help="seconds per run (420)")
    parser.add_argument("--grace", type=int, default=90, help="seconds to test after it (90)")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    processes = [
        start(name, flags, seed, args.out, args.limit, args.grace)
        for name, flags in args.entries
        for seed in args.seeds
    ]
    codes = [p.wait() for p in processes]
    rows = [summarise(name, flags, args.seeds, args.out) for name, flags in args.entries]
    with (args.out / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    table = "\n".join(lines) + "\n"
    (args.out / "summary.md").write_text(table)
    print(table)
    print(f"{len(processes)} runs in {time.monotonic() - began:.0f} s; exit codes {codes}")
    # 0 finished, 130 stopped at the limit and tested: both are results
    return 0 if all(code in (0, 130) for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
