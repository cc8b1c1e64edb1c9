"""What augmentation costs training, measured in one run.

    python benchmarks/augment_speed.py [--images 15000] [--sequence rows] [--rounds 2]

Augmentation is the model's first layer (`augment.Augment`, active in training only), so its cost
is the drop in training throughput. For each preset, builds the default TCN with that preset
on the same images, traces it with one untimed epoch, then times epochs, interleaving the presets
round by round, and prints the best samples/s of each. The machine's load changes absolute
figures, not which preset costs what.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

from fashion_tcn.config import Config, override
from fashion_tcn.data import load_fashion_mnist
from fashion_tcn.models import build_classifier
from fashion_tcn.sequences import make_dataset

PRESETS = ("none", "light", "strong")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=15000)
    parser.add_argument("--sequence", default="rows")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    train, _ = load_fashion_mnist()
    x, y = train.images[: args.images], train.labels[: args.images]
    print(f"Keras {keras.__version__} on {keras.backend.backend()}")
    print(f"{args.images} images, {args.sequence}, batch 128, default TCN")
    models = {}
    for preset in PRESETS:
        cfg = override(Config(), {"augment.preset": preset, "data.sequence": args.sequence})
        cfg = cfg.resolved()
        keras.utils.set_random_seed(0)
        model = build_classifier(cfg, 0.29, 0.12)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        dataset = make_dataset(x, y, batch_size=128)  # the order does not change the speed
        model.fit(dataset, epochs=1, verbose=0)  # warm-up: tracing, caches
        models[preset] = (model, dataset)
    best = dict.fromkeys(PRESETS, 0.0)
    for _ in range(args.rounds):
        for preset, (model, dataset) in models.items():
            start = time.perf_counter()
            model.fit(dataset, epochs=1, verbose=0)
            best[preset] = max(best[preset], len(x) / (time.perf_counter() - start))
    print("| augment | training samples/s | vs none |")
    print("|---|---|---|")
    for preset in PRESETS:
        print(f"| {preset} | {best[preset]:,.0f} | {best[preset] / best['none']:.2f}x |")


if __name__ == "__main__":
    main()
