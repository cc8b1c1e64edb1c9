"""Explanations: occlusion finds the pixels an answer depends on, per step and per class; the
CLI writes one figure per input; the report shows them (test_report_*)."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from fashion_tcn.cli import main
from fashion_tcn.data import load_fashion_mnist
from fashion_tcn.explain import class_maps, explain, occlusion, per_step
from fashion_tcn.rundir import RunDir

pytestmark = pytest.mark.backend

ROWS, COLS = slice(10, 14), slice(20, 24)  # the only pixels the known model looks at


@keras.saving.register_keras_serializable(package="tests")
class KnownPixels(keras.layers.Layer):
    """Class 1 is as likely as the square ROWS x COLS is bright; class 0 is the rest."""

    def call(self, images):
        x = keras.ops.cast(images, "float32") / 255.0
        evidence = keras.ops.mean(x[:, ROWS, COLS], axis=(1, 2))
        logits = keras.ops.stack([keras.ops.full_like(evidence, 2.0), 8.0 * evidence], axis=1)
        return keras.ops.softmax(logits)


@pytest.fixture(scope="module")
def known():
    images = keras.Input((28, 28), dtype="uint8")
    model = keras.Model(images, KnownPixels()(images))
    return lambda x: keras.ops.convert_to_numpy(model(x))


def test_occlusion_marks_the_pixels_the_answer_depends_on_and_nothing_else(known):
    images = np.full((2, 28, 28), 255, np.uint8)
    attribution = occlusion(known, images, np.array([1, 0]))
    reach = np.zeros((28, 28), bool)  # pixels sharing a 4x4 square with the known ones
    reach[ROWS.start - 3 : ROWS.stop + 3, COLS.start - 3 : COLS.stop + 3] = True
    assert np.all(attribution[:, ~reach] == 0)
    assert np.all(attribution[0, ROWS, COLS] > 0.05)  # hiding them lowers class 1
    assert np.all(attribution[1, ROWS, COLS] < -0.05)  # ... and raises class 0
    strongest = np.unravel_index(attribution[0].argmax(), (28, 28))
    assert strongest[0] in range(10, 14) and strongest[1] in range(20, 24)


def test_per_step_sums_the_pixels_each_step_reads():
    attribution = np.zeros((1, 28, 28))
    attribution[0, 12, 21] = 1.0
    assert per_step(attribution, "rows").argmax() == 12
    assert per_step(attribution, "columns").argmax() == 21
    assert per_step(attribution, "pixels").argmax() == 12 * 28 + 21
    permutation = np.random.default_rng(0).permutation(784)
    steps = per_step(attribution, "permuted", permutation)
    assert permutation[steps.argmax()] == 12 * 28 + 21  # step t reads pixel permutation[t]
    for mode in ("rows", "columns", "pixels"):
        assert per_step(attribution, mode).sum() == pytest.approx(1.0)


def test_class_maps_average_each_class_over_its_own_images(known):
    images = np.zeros((6, 28, 28), np.uint8)
    images[:3, ROWS, COLS] = 255  # class 1 images: the square is bright
    labels = np.array([1, 1, 1, 0, 0, 0])
    out = class_maps(known, images, labels, num_classes=3, per_class=2)
    assert out["class_counts"].tolist() == [2, 2, 0]
    assert out["class_maps"][1, ROWS, COLS].min() > 0.05
    assert np.all(out["class_maps"][2] == 0)  # a class without images: an empty map
    np.testing.assert_allclose(out["class_images"][1, ROWS, COLS], 255)


def test_explain_a_tcn_run(tiny_run, tiny_data_dir):
    run = RunDir(tiny_run)
    _, test = load_fashion_mnist(tiny_data_dir)
    out = explain(run.model(), test.images[:3], "rows")
    assert out["attribution"].shape == (3, 28, 28) and out["steps"].shape == (3, 28)
    assert out["trajectory"].shape == (3, 28, 10)
    # the prediction after the last step is the model's prediction
    np.testing.assert_allclose(out["trajectory"][:, -1], out["probabilities"], atol=1e-5)
    np.testing.assert_array_equal(out["predicted"], out["probabilities"].argmax(axis=1))


def test_explain_command_writes_a_figure_per_input(tiny_run, tiny_data_dir, tmp_path, capsys):
    _, test = load_fashion_mnist(tiny_data_dir)
    np.save(tmp_path / "two.npy", test.images[:2])
    inputs = [str(tmp_path / "two.npy"), str(tmp_path / "missing.png")]
    code = main(["explain", str(tiny_run), *inputs, "--out", str(tmp_path / "fig"), "--json"])
    assert code == 2  # one input is missing; the others are still explained
    captured = capsys.readouterr()
    records = json.loads(captured.out)
    assert [r["input"] for r in records] == [f"{inputs[0]}[0]", f"{inputs[0]}[1]", inputs[1]]
    assert "missing.png" in captured.err and len(captured.err.strip().splitlines()) == 1
    for record in records[:2]:
        assert record["figure"].endswith(".png") and len(record["top_steps"]) == 3
        assert Path(record["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len({r["figure"] for r in records[:2]}) == 2


def test_evaluate_chooses_how_many_images_per_class_the_maps_average(
    tiny_run, tiny_data_dir, tmp_path, capsys
):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    args = ["evaluate", str(run), "--data-dir", str(tiny_data_dir), "--no-report"]
    assert main([*args, "--explain-per-class", "3"]) == 0
    with np.load(run / "explain.npz") as explained:
        assert explained["class_counts"].tolist() == [3] * 10  # 10 test images of each class
    assert main([*args, "--explain-per-class", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--explain-per-class must be >= 1") and "\n" not in err
