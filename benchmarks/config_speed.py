"""Training throughput of a config on this machine: the model alone, and the real `train`.

    python benchmarks/config_speed.py configs/rows-encoder.yaml configs/pixels-wide.yaml \\
        [--images 10000] [--rounds 2] [--repeats 2] [--precision auto]

For each config, alternating `--repeats` times in one process (alone, real, alone, real, ...), so
a slow spell on a shared machine hits both alike and each gets as many epochs to show its best:
- **model alone**: the config's network (no augmentation) trains on random in-memory sequences
  of its shape, as many as the real run below trains on per epoch, for `--rounds + 1` epochs,
  timed per epoch like the real run (the best epoch after the first);
- **real train**: `train()`, the function behind `fashion-tcn train`, on the first `--images`
  real training images (validation split as configured) for `--rounds + 1` epochs: uint8
  batches in, augmentation and sequencing inside the model. The figure is the best epoch after
  the first (which traces) of `train_samples_per_s` in history.csv: the training batches
  alone, without validation or checkpoints.
The ratio real / alone says how much the input path and augmentation cost. The last column is the
minutes a 54,000-image epoch (the full training split) takes at the real speed.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from fashion_tcn.config import PRECISIONS, load_config, override
from fashion_tcn.models import build_model, dtype_policy
from fashion_tcn.sequences import sequence_shape
from fashion_tcn.train import EpochTimer, auto_precision, train

EPOCH_IMAGES = 54_000  # 60,000 less the default 10% validation split


def model_alone(cfg, samples: int, epochs: int) -> tuple[list[float], int]:
    """Training samples/s of every epoch after the first over `samples` random sequences,
    timed like the real run (EpochTimer), and the parameters."""
    steps, features = sequence_shape(cfg.data.sequence)
    with dtype_policy(cfg.train.precision):
        model = build_model(cfg.model, steps, features)
    model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((samples, steps, features), dtype=np.float32)
    y = rng.integers(0, 10, samples)
    speeds = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: speeds.append(logs["train_samples_per_s"])
    )
    model.fit(
        x,
        y,
        batch_size=cfg.train.batch_size,
        epochs=epochs,
        verbose=0,
        callbacks=[EpochTimer(samples), record],
    )
    return speeds[1:], model.count_params()


def real_train(cfg) -> list[float]:
    """`train_samples_per_s` of every epoch after the first."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        train(cfg, run_dir, verbose=0)
        with (run_dir / "history.csv").open() as f:
            rows = list(csv.DictReader(f))
    return [float(r["train_samples_per_s"]) for r in rows[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--images", type=int, default=10_000, help="real training images used")
    parser.add_argument("--rounds", type=int, default=2, help="timed epochs per run; best kept")
    parser.add_argument("--repeats", type=int, default=2, help="alone/real alternations")
    parser.add_argument("--precision", choices=PRECISIONS, help="override the config's")
    args = parser.parse_args()
    print(f"Keras {keras.__version__} on {keras.backend.backend()}")
    print(
        "| config | precision | parameters | batch | model alone samples/s | real train "
        "samples/s | real / alone | min per 54k-image epoch |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for path in args.configs:
        cfg = override(
            load_config(path),
            {
                "data.limit_train": args.images,
                "train.epochs": args.rounds + 1,
                "train.precision": args.precision,
            },
        ).resolved()
        if cfg.train.precision == "auto":
            cfg.train.precision = auto_precision(cfg)
        samples = args.images - round(cfg.data.val_fraction * args.images)
        alone, real = [], []
        for _ in range(args.repeats):
            speeds, parameters = model_alone(cfg, samples, args.rounds + 1)
            alone += speeds
            real += real_train(cfg)
        alone, real = max(alone), max(real)
        minutes = EPOCH_IMAGES / real / 60
        print(
            f"| {path} | {cfg.train.precision} | {parameters:,} | {cfg.train.batch_size} | "
            f"{alone:,.0f} | {real:,.0f} | {real / alone:.2f} | {minutes:.1f} |"
        )


if __name__ == "__main__":
    main()
