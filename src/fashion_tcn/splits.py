"""A run's data: real Fashion-MNIST, limited and split into train, validation and test arrays.

The validation set comes from the training images only, drawn with the run's seed, so tuning
never sees the test set; `limit_*` draw seeded random subsets for quick runs. Each draw has its own
seeded stream, so a run's test images depend on its seed and `limit_test` alone, never on
`limit_train`, and runs that differ only in the training limit are tested on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fashion_tcn.config import Config
from fashion_tcn.data import Split, load_fashion_mnist


@dataclass
class Splits:
    """Arrays a run trains, validates and tests on, after limits and the validation split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    provenance: dict


def _subset(
    split: Split, limit: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if limit is None or limit >= len(split):
        return split.images, split.labels
    keep = np.sort(rng.permutation(len(split))[:limit])
    return split.images[keep], split.labels[keep]


def load_splits(cfg: Config) -> Splits:
    """Real Fashion-MNIST, limited and split; the validation set comes from training data only."""
    train, test = load_fashion_mnist(cfg.data.data_dir)
    seed = cfg.train.seed
    x, y = _subset(train, cfg.data.limit_train, np.random.default_rng([seed, 1]))
    x_test, y_test = _subset(test, cfg.data.limit_test, np.random.default_rng([seed, 2]))
    # the validation stream is the seed's own generator: full-data splits are as they always were
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, round(cfg.data.val_fraction * len(x)))
    val, fit = order[:n_val], order[n_val:]
    return Splits(
        x[fit], y[fit], x[val], y[val], x_test, y_test, {"train": train.files, "test": test.files}
    )
