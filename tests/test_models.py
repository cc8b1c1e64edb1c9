"""Model registry: TCN and baselines share the harness; RNNs match the ~70K parameter budget."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fashion_tcn.cli import main
from fashion_tcn.config import Config, override
from fashion_tcn.models import RNN_PARAMETERS, build_model, rnn_units
from fashion_tcn.sequences import sequence_shape


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
        "1",
        "--quiet",
        "--units",
        "16",
    ]
    assert main(args) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == kind and metrics["num_examples"] == 100
    assert (run / "confusion_matrix.png").is_file()


def test_compare_writes_one_table(tiny_data_dir, tmp_path):
    out = tmp_path / "cmp"
    script = Path(__file__).parents[1] / "benchmarks" / "compare.py"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "tcn:rows",
            "gru:rows:--units 8",
            "--out",
            str(out),
            "--data-dir",
            str(tiny_data_dir),
            "--epochs",
            "1",
            "--filters",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    table = (out / "compare.md").read_text()
    assert table.count("\n") == 4 and "| tcn | rows |" in table and "| gru | rows |" in table
    assert "--units 8" in table  # each row carries the command that reproduces it
    assert (out / "compare.csv").is_file() and (out / "tcn-rows" / "model.keras").is_file()
