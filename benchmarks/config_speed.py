"""Training throughput of a config's model on this machine, before committing hours to it.

    python benchmarks/config_speed.py configs/pixels-wide.yaml [more configs] [--batches 4]

Builds each config's model, trains one warm-up batch (tracing), then times `--batches` batches
of random inputs of the right shape, three times, and prints the best samples/s and the minutes
a 54,000-image epoch (the training split) would take at that speed. No data pipeline or
augmentation: this is the model's cost alone. The machine's load changes absolute figures; the
best of three is the least disturbed.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from fashion_tcn.config import load_config
from fashion_tcn.models import build_model
from fashion_tcn.sequences import sequence_shape

EPOCH_IMAGES = 54_000  # 60,000 less the default 10% validation split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--batches", type=int, default=4, help="timed batches per repeat")
    args = parser.parse_args()
    print(f"Keras {keras.__version__} on {keras.backend.backend()}")
    print("| config | parameters | batch | samples/s (best of 3) | min per 54k-image epoch |")
    print("|---|---|---|---|---|")
    for path in args.configs:
        cfg = load_config(path).resolved()
        steps, features = sequence_shape(cfg.data.sequence)
        model = build_model(cfg.model, steps, features)
        model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy")
        batch = cfg.train.batch_size
        rng = np.random.default_rng(0)
        x = rng.random((batch * args.batches, steps, features), dtype=np.float32)
        y = rng.integers(0, 10, len(x))
        model.fit(x[:batch], y[:batch], batch_size=batch, verbose=0)  # warm-up: tracing
        best = 0.0
        for _ in range(3):
            start = time.perf_counter()
            model.fit(x, y, batch_size=batch, verbose=0, shuffle=False)
            best = max(best, len(x) / (time.perf_counter() - start))
        minutes = EPOCH_IMAGES / best / 60
        print(f"| {path} | {model.count_params():,} | {batch} | {best:,.0f} | {minutes:.1f} |")


if __name__ == "__main__":
    main()
