"""Training throughput with and without augmentation, measured in one run.

    python benchmarks/augment_speed.py [--images 15000] [--sequence rows]

For each preset, trains the default TCN for one warm-up epoch and one timed epoch on the same
images, and prints samples/s for the pipeline alone and for training. Compare the ratios: the
machine's load changes absolute figures, not which preset costs what.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

from fashion_tcn.augment import make_augmenter
from fashion_tcn.config import Config, override
from fashion_tcn.data import load_fashion_mnist
from fashion_tcn.models import build_model
from fashion_tcn.sequences import make_dataset, sequence_shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=15000)
    parser.add_argument("--sequence", default="rows")
    args = parser.parse_args()
    train, _ = load_fashion_mnist()
    x, y = train.images[: args.images], train.labels[: args.images]
    print(f"{args.images} images, {args.sequence}, batch 128, default TCN")
    print("| augment | pipeline samples/s | training samples/s | training vs none |")
    print("|---|---|---|---|")
    baseline = None
    for preset in ("none", "light", "strong"):
        cfg = override(Config(), {"augment.preset": preset, "data.sequence": args.sequence})
        cfg = cfg.resolved()
        keras.utils.set_random_seed(0)
        dataset = make_dataset(
            x,
            y,
            cfg.data.sequence,
            batch_size=128,
            shuffle=True,
            augment=make_augmenter(cfg.augment, 0),
        )
        start = time.perf_counter()
        for _ in dataset:
            pass
        pipeline = len(x) / (time.perf_counter() - start)
        model = build_model(cfg.model, *sequence_shape(cfg.data.sequence), 0.29, 0.12)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(dataset, epochs=1, verbose=0, shuffle=False)  # warm-up: tracing, caches
        start = time.perf_counter()
        model.fit(dataset, epochs=1, verbose=0, shuffle=False)
        training = len(x) / (time.perf_counter() - start)
        baseline = baseline or training
        print(f"| {preset} | {pipeline:,.0f} | {training:,.0f} | {training / baseline:.2f}x |")


if __name__ == "__main__":
    main()
