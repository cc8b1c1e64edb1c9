"""predict and export: user images, CSV rows, .npy arrays, streaming output, bad inputs."""

import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from fashion_tcn.cli import main
from fashion_tcn.data import load_fashion_mnist
from fashion_tcn.predict import Predictor, decode, fit_image, load_inputs
from fashion_tcn.rundir import RunDir

pytestmark = pytest.mark.backend


@pytest.fixture
def run_dir(tiny_run):
    return tiny_run


@pytest.fixture(scope="module")
def samples(tiny_data_dir):
    _, test = load_fashion_mnist(tiny_data_dir)
    return test.images[:4], test.labels[:4]


def test_fit_image_handles_size_colour_and_light_background():
    # a dark T-shape on a white, wide RGB canvas: must come out light-on-black, 28x28
    canvas = np.full((60, 120, 3), 255, np.uint8)
    canvas[10:50, 40:80] = (20, 40, 200)
    fitted = fit_image(Image.fromarray(canvas))
    assert fitted.shape == (28, 28) and fitted.dtype == np.uint8
    assert fitted[0, 0] == 0 and fitted[14, 14] > 150  # background black, object light


def test_png_round_trip_of_a_dataset_image_keeps_its_prediction(run_dir, samples, tmp_path):
    images, _ = samples
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    item = load_inputs([tmp_path / "a.png"])[0]
    np.testing.assert_array_equal(item.image, images[0])  # already 28x28 on black: unchanged
    predictor = Predictor(run_dir)
    np.testing.assert_allclose(
        predictor.probabilities(item.image[None]), predictor.probabilities(images[:1]), atol=1e-6
    )


def test_predict_stream_on_a_test_image(run_dir, samples, tmp_path, capsys):
    images, _ = samples
    big = Image.fromarray(255 - images[1]).resize((112, 112)).convert("RGB")  # light background
    big.save(tmp_path / "shirt.jpg")
    assert main(["predict", str(run_dir), str(tmp_path / "shirt.jpg"), "--stream"]) == 0
    out = capsys.readouterr().out
    assert "shirt.jpg:" in out and "after 100%" in out and "after  10%" in out


def test_json_csv_npy_and_bad_inputs_together(run_dir, samples, tmp_path, capsys):
    images, labels = samples
    csv_path = tmp_path / "rows.csv"
    rows = [",".join(map(str, [labels[i], *images[i].ravel()])) for i in range(2)]
    csv_path.write_text(
        "label," + ",".join(f"p{i}" for i in range(784)) + "\n" + "\n".join(rows) + "\n1,2,3\n"
    )
    np.save(tmp_path / "batch.npy", images[:3].reshape(3, 784))
    (tmp_path / "not-an-image.png").write_text("hello")
    (tmp_path / "empty.jpg").write_bytes(b"")
    code = main(
        [
            "predict",
            str(run_dir),
            str(csv_path),
            str(tmp_path / "batch.npy"),
            str(tmp_path / "not-an-image.png"),
            str(tmp_path / "empty.jpg"),
            str(tmp_path / "missing.png"),
            "--json",
            "--top",
            "2",
        ]
    )
    captured = capsys.readouterr()
    assert code == 2  # some inputs were bad ...
    records = json.loads(captured.out)
    good = [r for r in records if "top" in r]
    assert len(good) == 5  # ... and the good ones were still predicted
    assert all(len(r["top"]) == 2 for r in good)
    assert good[0]["input"].endswith("rows.csv:2") and good[2]["input"].endswith("batch.npy[0]")
    np.testing.assert_allclose(
        good[0]["top"][0]["probability"], good[2]["top"][0]["probability"], rtol=1e-5
    )  # same image
    errors = [line for line in captured.err.splitlines() if line.startswith("fashion-tcn")]
    assert len(errors) == 4
    assert any("rows.csv:4: 3 columns" in e for e in errors)
    assert any("not an image Pillow can read" in e for e in errors)
    assert any("empty file" in e for e in errors)
    assert any("no such file" in e for e in errors)


def test_bad_npy_shapes(tmp_path):
    np.save(tmp_path / "wrong.npy", np.zeros((2, 27, 28)))
    np.save(tmp_path / "nan.npy", np.full((28, 28), np.nan))
    items = load_inputs([tmp_path / "wrong.npy", tmp_path / "nan.npy"])
    assert "shape (2, 27, 28)" in items[0].error and "NaN" in items[1].error


def test_only_floats_in_0_to_1_are_scaled_and_each_row_keeps_its_own_error():
    """An integer image of 0s and 1s is a very dark image, not a 0..1 one; a float image is."""
    ones = np.eye(28, dtype=np.int64)
    dark = [
        decode("i.npy", _npy(ones), "npy"),
        decode("i.json", json.dumps(ones.tolist()).encode(), "json"),
    ]
    dark.append(decode("i.csv", ",".join(map(str, ones.ravel())).encode(), "csv"))
    for (item,) in dark:
        assert item.error is None and item.image.max() == 1, item.name
    bright = [decode("f.npy", _npy(ones.astype(np.float32)), "npy")]
    bright.append(decode("f.csv", ",".join(f"{v}.0" for v in ones.ravel()).encode(), "csv"))
    for (item,) in bright:
        assert item.error is None and item.image.max() == 255, item.name
    batch = np.stack([ones * 200, ones * 300, np.where(ones, np.inf, 0)]).astype(np.float64)
    good, high, infinite = decode("b.npy", _npy(batch), "npy")
    assert good.image.max() == 200 and good.error is None
    assert high.error == "b.npy[1]: pixel values outside 0..255"
    assert infinite.error == "b.npy[2]: contains NaN or infinite values"


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TFLite needs TensorFlow")
@pytest.mark.parametrize("fmt", ["savedmodel", "tflite"])
def test_exports_reload_with_the_same_predictions(run_dir, samples, tmp_path, fmt):
    import tensorflow as tf

    out = tmp_path / ("sm" if fmt == "savedmodel" else "m.tflite")
    assert main(["export", str(run_dir), "--format", fmt, "--out", str(out)]) == 0
    predictor = Predictor(run_dir, calibrated=False)
    x = samples[0]  # the model takes uint8 images
    expected = predictor.probabilities(x)
    if fmt == "savedmodel":
        loaded = tf.saved_model.load(str(out))  # keep a reference: serve() uses its variables
        got = loaded.serve(x).numpy()
    else:
        interpreter = tf.lite.Interpreter(model_path=str(out))
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="converts with TensorFlow")
def test_onnx_export_predicts_like_the_keras_model_in_onnxruntime(run_dir, samples, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    images = np.concatenate([samples[0], np.random.default_rng(0).integers(0, 256, (60, 28, 28))])
    images = images.astype(np.uint8)  # any batch size: 64 here, 4 and 60 of them random
    (got,) = session.run(None, {"image": images})
    expected = Predictor(run_dir, calibrated=False).probabilities(images)
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TFLite needs TensorFlow")
def test_step_export_streams_to_the_models_prediction(run_dir, samples, tmp_path):
    import tensorflow as tf

    out = tmp_path / "step.tflite"
    assert main(["export", str(run_dir), "--format", "step", "--out", str(out)]) == 0
    predictor = Predictor(run_dir, calibrated=False)
    images = samples[0][:3]
    x = predictor.sequences(images)  # (3, T, F)
    step = tf.lite.Interpreter(str(out)).get_signature_runner("step")
    state = {
        f"state_{i}": np.zeros((3, *shape), "float32")
        for i, shape in enumerate(predictor.model.get_layer("tcn").cache_shapes())
    }
    for t in range(x.shape[1]):
        result = step(step=x[:, t : t + 1], **state)
        state = {name: result[name] for name in state}
    np.testing.assert_allclose(
        result["probabilities"][:, 0], predictor.probabilities(images), atol=1e-5
    )


def test_predict_on_a_missing_run_is_one_line_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fashion_tcn.cli", "predict", str(tmp_path), "x.png"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 2 and "not a run directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_export_without_tensorflow_is_a_one_line_error(run_dir, monkeypatch, capsys):
    """On JAX or PyTorch installs without TensorFlow, export says what to install."""
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` fail
    assert main(["export", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fashion-tcn: error: export needs TensorFlow") and "\n" not in err


def test_tflite_export_on_another_backend_is_a_one_line_error(run_dir, monkeypatch, capsys):
    pytest.importorskip("tensorflow", reason="without TensorFlow export says so first")
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert main(["export", str(run_dir), "--format", "tflite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "KERAS_BACKEND=tensorflow" in err and "\n" not in err


def test_predict_applies_the_runs_temperature_unless_told_not_to(run_dir, samples):
    temperature = RunDir(run_dir).temperature()
    assert temperature != 1.0  # fitted on the validation split when the run was tested
    raw = Predictor(run_dir, calibrated=False).probabilities(samples[0])
    calibrated = Predictor(run_dir).probabilities(samples[0])
    np.testing.assert_array_equal(calibrated.argmax(axis=1), raw.argmax(axis=1))
    logits = np.log(raw) / temperature
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(calibrated, expected, rtol=1e-4, atol=1e-6)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    calibration = metrics["calibration"]
    assert calibration["temperature"] == pytest.approx(temperature)
    for key in ("reliability", "reliability_calibrated"):
        assert sum(row["count"] for row in calibration[key]) == metrics["num_examples"]
    assert (run_dir / "reliability.png").stat().st_size > 0


def test_predict_no_calibrated_prints_the_models_own_probabilities(run_dir, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.full((28, 28), 200, np.uint8))
    tops = {}
    for flag in ("--calibrated", "--no-calibrated"):
        assert main(["predict", str(run_dir), str(tmp_path / "x.npy"), "--json", flag]) == 0
        tops[flag] = json.loads(capsys.readouterr().out)[0]["top"][0]
    raw = Predictor(run_dir, calibrated=False).probabilities(np.full((1, 28, 28), 200, np.uint8))
    assert tops["--no-calibrated"]["probability"] == pytest.approx(float(raw.max()), abs=1e-6)
    assert tops["--calibrated"]["class"] == tops["--no-calibrated"]["class"]
    assert tops["--calibrated"]["probability"] != tops["--no-calibrated"]["probability"]


def test_stream_applies_the_temperature_fitted_where_each_prediction_is_made(run_dir, samples):
    """Predictions after part of the sequence take the temperature fitted on validation at that
    point, not the whole sequence's (evaluate stores one per tenth of the sequence)."""
    from fashion_tcn.metrics import with_temperature
    from fashion_tcn.stream import StreamingClassifier

    run = RunDir(run_dir)
    points = json.loads(run.calibration_file.read_text())["anytime"]
    assert [p["steps"] for p in points] == [3, 6, 8, 11, 14, 17, 20, 22, 25, 28]
    predictor = Predictor(run_dir)
    image = samples[0][1]
    trajectory = StreamingClassifier(predictor.model).run(predictor.sequences(image[None]))[0]
    for row in predictor.stream(image, fractions=(0.25, 1.0)):
        t = row["steps"]
        expected = with_temperature(trajectory[t - 1 : t], run.temperature(steps=t))[0]
        assert row["probability"] == pytest.approx(float(expected.max()), rel=1e-4)
    assert run.temperature(steps=7) == points[1]["temperature"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"ece", "ece_whole_temperature", "ece_calibrated"} <= set(metrics["anytime"][0])
