"""Train model x sequence-mode configs with one budget and print one comparison table.

    python benchmarks/compare.py tcn:rows lstm:rows gru:rows cnn:rows --epochs 10
    python benchmarks/compare.py tcn:pixels lstm:pixels gru:pixels --epochs 2 --limit-train 10000

Each entry is MODEL:SEQUENCE, optionally with flags for that entry only after a second colon
(`tcn:rows:--augment strong --epochs 40`). Flags after the entries apply to every entry, exactly as
`fashion-tcn train` takes them. Runs go to OUT/<model>-<sequence>[-N]; an entry whose run
directory already has metrics.json is read, not retrained, so an interrupted comparison resumes.
Writes OUT/compare.md and OUT/compare.csv and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from pathlib import Path

from fashion_tcn.cli import main as fashion_tcn
from fashion_tcn.config import MODEL_KINDS

COLUMNS = [
    "model",
    "sequence",
    "test accuracy",
    "parameters",
    "epochs",
    "s/epoch",
    "samples/s",
    "test set",
    "command",
]


def run_entry(entry: str, shared: list[str], run_dir: Path) -> dict:
    model, sequence, *extra = entry.split(":", 2)
    args = [
        "--model",
        model,
        "--sequence",
        sequence,
        *shared,
        *shlex.split(extra[0] if extra else ""),
    ]
    command = "fashion-tcn train " + shlex.join(args)
    if not (run_dir / "metrics.json").is_file():
        code = fashion_tcn(["train", *args, "--run-dir", str(run_dir), "--quiet"])
        if code != 0:
            raise SystemExit(f"compare: {entry} failed with exit code {code}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "model": model,
        "sequence": metrics["sequence"],
        "test accuracy": f"{100 * metrics['accuracy']:.2f}%",
        "parameters": f"{metrics['parameters']:,}",
        "epochs": metrics["epochs"],
        "s/epoch": f"{metrics['mean_epoch_time']:.1f}",
        "samples/s": f"{metrics['mean_samples_per_s']:.0f}",
        "test set": metrics["test_set"],
        "command": f"`{command}`",
    }


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def is_entry(arg: str) -> bool:
    """`tcn:rows`, `lstm:pixels:--units 64`; never the value of a flag."""
    return ":" in arg and arg.split(":", 1)[0] in MODEL_KINDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        usage="%(prog)s MODEL:SEQUENCE[:FLAGS] ... [--out OUT] [fashion-tcn train flags]",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    # entries are told apart by their form, so they may stand before or after the shared flags
    # (argparse alone would take the value of an unknown flag, `--epochs 10`, for an entry)
    args, rest = parser.parse_known_args(argv)
    entries = [arg for arg in rest if is_entry(arg)]
    shared = [arg for arg in rest if not is_entry(arg)]
    if not entries:
        parser.error(f"no MODEL:SEQUENCE entries (MODEL is one of {', '.join(MODEL_KINDS)})")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, seen = [], {}
    for entry in entries:
        name = "-".join(entry.split(":", 2)[:2])
        seen[name] = seen.get(name, 0) + 1
        suffix = f"-{seen[name]}" if seen[name] > 1 else ""
        rows.append(run_entry(entry, shared, args.out / f"{name}{suffix}"))
        print(f"compare: {entry}: {rows[-1]['test accuracy']}", flush=True)
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
