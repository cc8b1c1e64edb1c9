"""A seeded CPU run trains to pinned weights, so refactoring cannot silently change what training
computes (and every accuracy figure in the README keeps reproducing).

`tests/data/pinned_<backend>.npz` was written by `python tests/test_pinned.py` before the 0.3
redesign; rewrite it only for a change that is meant to alter training, and say so in the commit.
"""

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

PINNED = Path(__file__).parent / "data" / f"pinned_{keras.backend.backend()}.npz"
# augmentation, erasing, dropout, a step encoder and weight norm: every seeded draw in training
FLAGS = (
    "--epochs", "2", "--filters", "8", "--dilations", "1,2,4", "--step-filters", "4",
    "--augment", "light", "--erase", "0.5", "--dropout", "0.1", "--norm", "weight",
    "--seed", "7", "--lr", "0.01",
)  # fmt: skip


def trained_weights(train_tiny, run_dir: Path) -> dict[str, np.ndarray]:
    assert train_tiny(run_dir, *FLAGS) == 0
    model = keras.saving.load_model(run_dir / "last.keras")
    return {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}


@pytest.mark.skipif(not PINNED.is_file(), reason=f"no {PINNED.name} for this backend")
def test_seeded_run_trains_to_the_pinned_weights(train_tiny, tmp_path):
    weights = trained_weights(train_tiny, tmp_path / "run")
    pinned = np.load(PINNED)
    assert sorted(weights) == sorted(pinned.files)
    for name, value in weights.items():  # bit-equal on one machine; 1e-5 across CPUs' kernels
        np.testing.assert_allclose(value, pinned[name], atol=1e-5, err_msg=name)


if __name__ == "__main__":  # rewrite the pin for this backend
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import fake_images, write_csv

    from fashion_tcn.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        for name, n, seed in (("train", 400, 0), ("test", 100, 1)):
            labels = np.arange(n) % 10
            write_csv(data / f"fashion-mnist_{name}.csv", labels, fake_images(labels, seed))

        def train_tiny(run_dir, *flags):
            args = ["train", "--data-dir", str(data), "--run-dir", str(run_dir), "--quiet"]
            return main([*args, "--stacks", "1", *flags])

        np.savez(PINNED, **trained_weights(train_tiny, Path(tmp) / "run"))
    print(f"wrote {PINNED}")
