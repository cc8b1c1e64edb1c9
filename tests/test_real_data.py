"""Slow tier: the CLI on the real Fashion-MNIST (Debian's dataset-fashion-mnist or a download)."""

import json

import keras
import numpy as np
import pytest
from PIL import Image
from test_cli import ARTIFACTS  # one list of what a run directory holds
from test_report_browser import open_in_chromium

from fashion_tcn.cli import main
from fashion_tcn.data import CLASS_NAMES, load_fashion_mnist
from fashion_tcn.models import step_predictions
from fashion_tcn.sequences import to_sequences
from fashion_tcn.stream import StreamingClassifier

pytestmark = [pytest.mark.slow, pytest.mark.backend]


def test_rows_tcn_learns_real_data(tmp_path, capsys):
    """The default configuration on a subset; its report, in Chromium, shows calibration and
    explanations like the rest."""
    run = tmp_path / "rows"
    code = main(
        [
            "train",
            "--limit-train",
            "3000",
            "--limit-test",
            "1000",
            "--epochs",
            "3",  # the two-stack default needs a third epoch on 3,000 images
            "--run-dir",
            str(run),
            "--quiet",
        ]
    )
    assert code == 0
    for name in ARTIFACTS:
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_examples"] == 1000
    assert metrics["accuracy"] >= 0.70, metrics["accuracy"]  # chance is 0.10
    assert [row["class"] for row in metrics["truth_table"][:10]] == list(CLASS_NAMES)
    provenance = json.loads((run / "data.json").read_text())
    assert provenance["test"]["images_sha256"].startswith("5b4141f0")
    out = capsys.readouterr().out
    assert "Sneaker" in out and "accuracy" in out.lower()

    calibration = metrics["calibration"]
    # what the fit guarantees; the test ECE (in the report) may move either way
    assert calibration["nll_validation_calibrated"] <= calibration["nll_validation"]
    assert 0 <= calibration["ece_calibrated"] < 0.1
    assert json.loads((run / "calibration.json").read_text())["temperature"] > 0
    page = open_in_chromium(run / "report.html", tmp_path)
    assert {"Calibration", "Explanations"} <= set(page["h3"])
    assert [image["alt"] for image in page["images"] if not image["ok"]] == []
    alts = [image["alt"] for image in page["images"]]
    assert "rows: reliability diagrams" in alts and "rows: mean occlusion map per class" in alts
    assert sum(alt.startswith("rows: test image") for alt in alts) == 4


def test_pixels_tcn_runs_and_reports(tmp_path, capsys):
    run = tmp_path / "pixels"
    code = main(
        [
            "train",
            "--sequence",
            "pixels",
            "--precision",
            "float32",  # streaming is float64: exact against a float32 full pass
            "--epochs",
            "1",
            "--limit-train",
            "5000",
            "--limit-test",
            "1000",
            "--run-dir",
            str(run),
            "--quiet",
        ]
    )
    assert code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["receptive_field"] >= 784
    assert metrics["accuracy"] > 0.3, metrics["accuracy"]

    # streaming equals the full pass at every one of the 784 steps of real test images
    model = keras.saving.load_model(run / "model.keras")
    _, test = load_fashion_mnist()
    pixels = np.asarray(to_sequences(test.images[:4], "pixels"))
    streamed = StreamingClassifier(model, batch=4).run(pixels)
    full = step_predictions(model, test.images[:4])  # the model takes images
    np.testing.assert_allclose(streamed, full, atol=1e-5)

    # predict --stream on a PNG made from a real test image, enlarged onto a light background
    picture = Image.fromarray(255 - test.images[0]).resize((140, 140)).convert("RGB")
    picture.save(tmp_path / "sample.png")
    capsys.readouterr()
    assert main(["predict", str(run), str(tmp_path / "sample.png"), "--stream"]) == 0
    out = capsys.readouterr().out
    assert "sample.png:" in out and out.count("after") == 5
