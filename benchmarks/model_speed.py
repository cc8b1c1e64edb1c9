"""Training speed of several models side by side: each one's real `train` on the same subset of
the training images, interleaved (every repeat trains each model in turn, so a slow spell on a
shared machine hits them alike), the best epoch after the first (which traces) kept.

    python benchmarks/model_speed.py tcn:rows "gru:rows:--units 252" \
        "lstm:rows:--units 217" cnn:rows [--images 6000] [--rounds 2] [--repeats 2]

Entries as `benchmarks/compare.py` takes them (`model:sequence[:more train flags]`), on top of
the defaults, so the models are the comparison's own. Run it alone on the machine. The figures are
`train_samples_per_s` (the training batches alone, without validation or checkpoints) and the
seconds a 54,000-image epoch (the full training split) takes at that speed.
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

from fashion_tcn.config import Config, override
from fashion_tcn.flags import build_parser, config_overrides
from fashion_tcn.train import train

EPOCH_IMAGES = 54_000  # 60,000 less the default 10% validation split


def entry_config(entry: str, images: int, epochs: int) -> Config:
    """The config `fashion-tcn train` would run for a compare.py entry, on `images` images."""
    model, sequence, *extra = entry.split(":", 2)
    flags = shlex.split(extra[0] if extra else "")
    args = build_parser().parse_args(["train", "--model", model, "--sequence", sequence, *flags])
    limits = {"data.limit_train": images, "train.epochs": epochs}
    return override(Config(), {**config_overrides(args), **limits}).resolved()


def epoch_speeds(cfg: Config) -> list[float]:
    """`train_samples_per_s` of every epoch after the first."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        train(cfg, run_dir, verbose=0)
        with (run_dir / "history.csv").open() as f:
            return [float(row["train_samples_per_s"]) for row in list(csv.DictReader(f))[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("entries", nargs="+", help="model:sequence[:train flags]")
    parser.add_argument("--images", type=int, default=6000, help="real training images used")
    parser.add_argument("--rounds", type=int, default=2, help="timed epochs per training")
    parser.add_argument("--repeats", type=int, default=2, help="times each model is trained")
    args = parser.parse_args()
    configs = {e: entry_config(e, args.images, args.rounds + 1) for e in args.entries}
    best = dict.fromkeys(configs, 0.0)
    for _ in range(args.repeats):
        for entry, cfg in configs.items():
            best[entry] = max(best[entry], *epoch_speeds(cfg))
    print(f"Keras {keras.__version__} on {keras.backend.backend()}, {args.images:,} images")
    print("| entry | training samples/s | s per 54k-image epoch |")
    print("|---|---:|---:|")
    for entry, speed in best.items():
        print(f"| {entry} | {speed:,.0f} | {EPOCH_IMAGES / speed:.1f} |")


if __name__ == "__main__":
    main()
