"""Shared fixtures: a tiny, learnable Fashion-MNIST look-alike written as Kaggle CSVs."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    """On JAX every new shape of a step is compiled by XLA, seconds each, and the tests train the
    same tiny models again and again, in both xdist workers and in CLI subprocesses: one on-disk
    compilation cache in pytest's cache folder (keyed by the computation, so changed code compiles
    afresh) serves them all (docs/development.md measures it)."""
    cache = getattr(config, "cache", None)  # absent under `-p no:cacheprovider`
    if cache is not None:
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache.mkdir("jax-compilation")))
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    # The tests' models are tiny, so XLA's optimizing passes cost far more than they save: JAX's
    # own switch for smoke tests skips most of them (the JAX tier on a fresh clone, cold cache:
    # 11.3 -> 7.4 min; docs/development.md). What is computed is the same; the pins still hold.
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")


def pytest_collection_modifyitems(items):
    """The longest files first (their `minutes` mark), so that pytest-xdist, handing out whole
    files in this order (`--no-loadscope-reorder`), does not leave one worker on a long file
    at the end while the other idles. The sort is stable: a file's own order is kept."""

    def minutes(item) -> float:
        mark = item.get_closest_marker("minutes")
        return mark.args[0] if mark else 0

    items.sort(key=lambda item: -minutes(item))


def fake_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """Class k is a bright vertical band on columns 2k..2k+5 over noise: easy to learn."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (len(labels), 28, 28))
    for i, label in enumerate(labels):
        images[i, 4:24, 2 * label : 2 * label + 6] += 180
    return images.astype(np.uint8)


def write_csv(path: Path, labels: np.ndarray, images: np.ndarray) -> Path:
    header = "label," + ",".join(f"pixel{i}" for i in range(1, 785))
    rows = np.column_stack([labels, images.reshape(len(labels), -1)])
    np.savetxt(path, rows, fmt="%d", delimiter=",", header=header, comments="")
    return path


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-fashion")
    for name, n, seed in (("train", 400, 0), ("test", 100, 1)):
        labels = np.arange(n) % 10
        write_csv(folder / f"fashion-mnist_{name}.csv", labels, fake_images(labels, seed))
    return folder


@pytest.fixture(scope="session")
def train_tiny(tiny_data_dir):
    """`train_tiny(run_dir, *flags, test=False, report=False)`: `fashion-tcn train` on the tiny
    data, quietly, one stack unless the flags say otherwise; exit code. The test-set evaluation
    (predictions, calibration, occlusion maps, plots: a large part of a tiny run) and the HTML
    report only when asked: `evaluate`'s and the report's own tests cover them."""
    from fashion_tcn.cli import main

    def run(run_dir: Path, *flags: str, test: bool = False, report: bool = False) -> int:
        quiet = ["--quiet", *([] if test else ["--no-test"]), *([] if report else ["--no-report"])]
        data = ["--data-dir", str(tiny_data_dir), "--run-dir", str(run_dir)]
        return main(["train", *data, *quiet, "--stacks", "1", *flags])

    return run


@pytest.fixture(scope="session")
def tiny_run(train_tiny, tmp_path_factory) -> Path:
    """One small TCN trained (3 epochs, rows) on the tiny data, shared by every test that only
    reads a run: copy it before changing it, and write explanations elsewhere (`-o`)."""
    run = tmp_path_factory.mktemp("shared") / "run"
    flags = ["--epochs", "3", "--filters", "8", "--dilations", "1,2,4", "--lr", "0.01"]
    assert train_tiny(run, *flags, test=True) == 0
    return run
