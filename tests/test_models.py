"""Model registry: TCN and baselines share the harness; RNNs match the ~70K parameter budget."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fashion_tcn.cli import main
from fashion_tcn.config import Config, override
from fashion_tcn.models import RNN_PARAMETERS, build_model, rnn_units
from fashion_tcn.sequences import sequence_shape

pytestmark = [pytest.mark.backend, pytest.mark.minutes(2)]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("sequence", ["rows", "pixels"])
def test_rnns_are_sized_to_the_budget(kind, sequence):
    cfg = override(Config(), {"model.kind": kind, "data.sequence": sequence}).resolved()
    model = build_model(cfg.model, *sequence_shape(sequence))
    assert 0.95 * RNN_PARAMETERS <= model.count_params() <= RNN_PARAMETERS
    assert model.get_layer(kind).units == rnn_units(kind, sequence_shape(sequence)[1])


def test_cnn_reads_the_image_whatever_the_mode():
    cfg = override(Config(), {"model.kind": "cnn", "data.sequence": "pixels"}).resolved()
    assert cfg.data.sequence == "rows"
    assert build_model(cfg.model, 28, 28).output_shape == (None, 10)


@pytest.mark.parametrize("kind", ["lstm", "gru", "cnn"])
def test_baselines_train_in_the_same_harness(kind, tiny_data_dir, tmp_path):
    run = tmp_path / kind
    args = [
        "train",
        "--model",
        kind,
        "--data-dir",
        str(tiny_data_dir),
        "--run-dir",
        str(run),
        "--epochs",
        "3",
        "--lr",
        "0.01",
        "--batch-size",
        "32",
        "--quiet",
        "--units",
        "16",
    ]
    assert main(args) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == kind and metrics["num_examples"] == 100
    # it learns in 36 steps: chance, or a constant answer, scores 10% on the balanced classes
    assert metrics["accuracy"] >= 0.25, metrics["accuracy"]
    assert (run / "confusion_matrix.png").is_file()


@pytest.mark.slow  # a benchmark script: not for the fast tier
def test_compare_writes_one_table(tiny_data_dir, tmp_path):
    out = tmp_path / "cmp"
    script = Path(__file__).parents[1] / "benchmarks" / "compare.py"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--epochs",  # shared flags may come first: "1" is a value, not an entry
            "1",
            "tcn:rows",
            "--out",
            str(out),
            "gru:rows:--units 8",
            "--data-dir",
            str(tiny_data_dir),
            "--filters",
            "8",
            "--seeds",
            "0,1",
            "--target-val",
            "0.05",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    table = (out / "compare.md").read_text()
    assert table.count("\n") == 4 and "| tcn | rows |" in table and "| gru | rows |" in table
    assert "--units 8" in table  # each row carries the command that reproduces it
    for seed in (0, 1):
        assert (out / f"tcn-rows-s{seed}" / "model.keras").is_file()
    with (out / "compare.csv").open() as f:
        tcn, gru = csv.DictReader(f)
    assert " ± " in tcn["test accuracy"] and tcn["seeds"] == "0,1"
    assert tcn["time to target val"].endswith("s to 5.0%")
    assert gru["stream state"] == "8" and int(gru["stream FLOPs/step"].replace(",", "")) == 2 * (
        28 * 24 + 8 * 24 + 8 * 10  # GRU gates over the input and the state, then the classifier
    )
    assert int(tcn["stream state"].replace(",", "")) > 0
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"  # the curves, mean and band


def test_cross_entropy_by_hand():
    """Plain, label-smoothed and anytime cross-entropy against the formulas."""
    import numpy as np

    from fashion_tcn.models import CrossEntropy

    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype="float32")
    labels = np.array([0, 1])
    plain = -np.log([0.7, 0.1]).mean()
    np.testing.assert_allclose(float(CrossEntropy()(labels, probs)), plain, rtol=1e-5)

    smooth = 0.3  # targets become 0.8 / 0.1 / 0.1 for three classes
    target = np.full((2, 3), smooth / 3) + (1 - smooth) * np.eye(3)[labels]
    expected = -(target * np.log(probs)).sum(axis=1).mean()
    got = float(CrossEntropy(label_smoothing=smooth)(labels, probs))
    np.testing.assert_allclose(got, expected, rtol=1e-5)

    steps = np.stack([probs[::-1], probs], axis=1)  # (B, T=2, 3): step 0 wrong, step 1 as above
    early = -np.log([0.1, 0.2])  # what step 0 gives the true classes
    expected = (-np.log([0.7, 0.1]) + 0.5 * early).mean()
    got = float(CrossEntropy(anytime=0.5)(labels, steps))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_ema_replaces_the_weights_every_epoch():
    from fashion_tcn.config import TrainConfig
    from fashion_tcn.train import make_optimizer

    optimizer = make_optimizer(TrainConfig(epochs=2, ema=0.99), steps_per_epoch=7)
    assert optimizer.use_ema and optimizer.ema_momentum == 0.99
    assert optimizer.ema_overwrite_frequency == 7
    assert not make_optimizer(TrainConfig(epochs=2), steps_per_epoch=7).use_ema


def test_ema_and_label_smoothing_train_and_resume(train_tiny, tmp_path):
    run = tmp_path / "ema"
    assert train_tiny(run, "--ema", "0.9", "--label-smoothing", "0.1", "--epochs", "1") == 0
    config = (run / "config.yaml").read_text()
    assert "ema: 0.9" in config and "label_smoothing: 0.1" in config
    assert train_tiny(run, "--resume", "--epochs", "2", test=True) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2


@pytest.mark.slow  # a benchmark on the real data: not for the fast tier
def test_config_speed_prints_a_row_per_config(tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text("model:\n  filters: 8\n  dilations: [1, 2, 4, 8]\n  stacks: 1\n")
    script = Path(__file__).parents[1] / "benchmarks" / "config_speed.py"
    result = subprocess.run(
        [sys.executable, str(script), str(config), "--images", "600", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith(f"| {config}"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "float32" and cells[3] == "128"
    alone, real, ratio = (float(cells[i].replace(",", "")) for i in (4, 5, 6))
    assert alone > 0 and real > 0 and ratio == pytest.approx(real / alone, rel=0.02)
