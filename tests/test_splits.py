"""A run's data: independent seeded draws, honest subset labels, and the data checked again."""

import json
import shutil

import numpy as np
import pytest
from conftest import fake_images, write_csv

from fashion_tcn.cli import main
from fashion_tcn.config import Config, override
from fashion_tcn.splits import load_splits

pytestmark = pytest.mark.minutes(1)


def _splits(data_dir, **limits):
    values = {"data.data_dir": str(data_dir), "train.seed": 3}
    values |= {f"data.{name}": limit for name, limit in limits.items()}
    return load_splits(override(Config(), values))


def test_the_test_images_do_not_depend_on_the_training_limit(tiny_data_dir):
    full, limited = (
        _splits(tiny_data_dir, limit_test=50),
        _splits(tiny_data_dir, limit_test=50, limit_train=100),
    )
    np.testing.assert_array_equal(full.x_test, limited.x_test)
    assert len(limited.x_train) + len(limited.x_val) == 100
    assert full.test_set == limited.test_set == "random 50"


def test_the_full_data_validation_split_is_the_seeds_own_permutation(tiny_data_dir):
    """Unchanged for full-data runs: the validation rows are the seed's first permutation."""
    splits = _splits(tiny_data_dir)
    order = np.random.default_rng(3).permutation(400)
    from fashion_tcn.data import load_fashion_mnist

    train, _ = load_fashion_mnist(tiny_data_dir)
    np.testing.assert_array_equal(splits.x_val, train.images[order[:40]])


def test_limits_above_the_data_are_the_full_set_with_a_note(tiny_data_dir, tmp_path, capsys):
    splits = _splits(tiny_data_dir, limit_train=1000, limit_test=200)
    assert splits.test_set == "full" and len(splits.x_test) == 100
    run = tmp_path / "run"
    flags = ["--limit-train", "1000", "--limit-test", "200", "--epochs", "1", "--filters", "4"]
    argv = ["train", "--data-dir", str(tiny_data_dir), "--run-dir", str(run), "--quiet", *flags]
    assert main([*argv, "--stacks", "1", "--dilations", "1,2,4", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "note: --limit-train 1000 exceeds the 400 train images: all of them are used" in out
    assert "note: --limit-test 200 exceeds the 100 test images" in out
    assert json.loads((run / "metrics.json").read_text())["test_set"] == "full"


def test_a_run_refuses_other_data_on_resume_and_evaluate(
    train_tiny, tiny_data_dir, tmp_path, capsys
):
    run = tmp_path / "run"
    assert train_tiny(run, "--epochs", "1", "--filters", "4", "--dilations", "1,2,4") == 0
    recorded = json.loads((run / "data.json").read_text())["fingerprint"]
    assert len(recorded) == 64  # CSV data has a fingerprint too
    other = tmp_path / "other"
    shutil.copytree(tiny_data_dir, other)
    labels = np.arange(100) % 10
    write_csv(other / "fashion-mnist_test.csv", labels, fake_images(labels, seed=7))

    capsys.readouterr()
    code = main(["evaluate", str(run), "--data-dir", str(other)])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and "the data differs" in err[0]
    assert str(other) in err[0] and str(tiny_data_dir) in err[0]
    code = main(["train", "--data-dir", str(other), "--run-dir", str(run), "--resume",
                 "--epochs", "2", "--quiet"])  # fmt: skip
    assert code == 2 and len((run / "history.csv").read_text().splitlines()) == 2
    cheap = ["--explain-per-class", "1", "--no-report"]  # nor maps nor page are read here
    assert main(["evaluate", str(run), "--data-dir", str(other), "--other-data", *cheap]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"].startswith("other than") and metrics["data_fingerprint"] != recorded
    assert main(["evaluate", str(run), *cheap]) == 0
    assert json.loads((run / "metrics.json").read_text())["data"] == "as trained"
