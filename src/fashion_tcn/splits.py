"""A run's data: real Fashion-MNIST, limited and split into train, validation and test arrays.

The validation set comes from the training images only, drawn with the run's seed, so tuning
never sees the test set; `limit_*` draw seeded random subsets for quick runs. Each draw has its own
seeded stream, so a run's test images depend on its seed and `limit_test` alone, never on
`limit_train`, and runs that differ only in the training limit are tested on the same images.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from fashion_tcn.config import Config, ConfigError
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
    provenance: dict  # data.json: the files, and the fingerprint of what was read from them
    test_set: str = "full"  # "full", or "random N" when a limit drew a subset


def fingerprint(*splits: Split) -> str:
    """SHA-256 of the images and labels themselves, whichever format (IDX or CSV) held them."""
    digest = hashlib.sha256()
    for split in splits:
        digest.update(np.ascontiguousarray(split.images, np.uint8).tobytes())
        digest.update(np.ascontiguousarray(split.labels, np.int64).tobytes())
    return digest.hexdigest()


def check_same_data(recorded: dict, splits: Splits, where: str) -> None:
    """ConfigError when the data read now is not the data a run recorded in data.json (runs
    written before the fingerprint was recorded are not checked)."""
    then, now = recorded.get("fingerprint"), splits.provenance["fingerprint"]
    if then is not None and then != now:
        raise ConfigError(
            f"{where}: the data differs from what the run was trained on (now {now[:12]} "
            f"from {_source(splits.provenance)}; recorded {then[:12]} from {_source(recorded)})"
        )


def _source(provenance: dict) -> str:
    files = provenance.get("train", {})
    return str(files.get("csv") or files.get("images") or "unknown files")


def _subset(
    split: Split, limit: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if limit is None or limit >= len(split):  # a limit that covers the split keeps all of it
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
    provenance = {"train": train.files, "test": test.files, "fingerprint": fingerprint(train, test)}
    test_set = "full" if len(y_test) == len(test) else f"random {len(y_test)}"
    return Splits(x[fit], y[fit], x[val], y[val], x_test, y_test, provenance, test_set)


def limit_notes(cfg: Config, train: Split, test: Split) -> list[str]:
    """One line per `limit_*` larger than its split: the whole split is used."""
    limits = (("train", cfg.data.limit_train, train), ("test", cfg.data.limit_test, test))
    return [
        f"--limit-{name} {limit} exceeds the {len(split):,} {name} images: all of them are used"
        for name, limit, split in limits
        if limit is not None and limit > len(split)
    ]
