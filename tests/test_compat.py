"""A run saved before the architecture redesign (issue 17; written by commit 5500fc3 with
`train --stacks 1 --epochs 2 --filters 8 --dilations 1,2,4 --step-filters 4 --pooling mean
--norm layer` on the tiny data) still loads, predicts what it predicted then, evaluates to the
accuracy it had, and streams."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from fashion_tcn.cli import main
from fashion_tcn.models import step_predictions
from fashion_tcn.predict import Predictor
from fashion_tcn.stream import StreamingClassifier

pytestmark = pytest.mark.backend

OLD_RUN = Path(__file__).parent / "data" / "run_before_redesign"


@pytest.fixture
def old_run(tmp_path) -> Path:
    return Path(shutil.copytree(OLD_RUN, tmp_path / "old"))


def test_an_old_run_predicts_evaluates_and_streams_as_before(old_run, tiny_data_dir, capsys):
    then = np.load(old_run / "predictions.npz")
    accuracy_then = json.loads((old_run / "metrics.json").read_text())["accuracy"]
    assert main(["evaluate", str(old_run), "--data-dir", str(tiny_data_dir)]) == 0
    now = np.load(old_run / "predictions.npz")
    np.testing.assert_array_equal(now["labels"], then["labels"])
    np.testing.assert_allclose(now["probs"], then["probs"], atol=1e-5)
    assert json.loads((old_run / "metrics.json").read_text())["accuracy"] == accuracy_then

    predictor = Predictor(old_run)
    images = np.random.default_rng(0).integers(0, 255, (2, 28, 28), np.uint8)
    streamed = StreamingClassifier(predictor.model, batch=2).run(predictor.sequences(images))
    np.testing.assert_allclose(streamed, step_predictions(predictor.model, images), atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TFLite needs TensorFlow")
def test_an_old_run_exports_its_stream_step(old_run):
    assert main(["export", str(old_run), "--format", "step"]) == 0
    assert (old_run / "export" / "step.tflite").stat().st_size > 0
