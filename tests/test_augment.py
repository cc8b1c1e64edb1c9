"""Augmentation: the Augment layer's transforms, seeding, independent draws, exact erase rate,
inside the saved model, and never at evaluation."""

import json

import keras
import numpy as np
import pytest

from fashion_tcn.augment import Augment, make_augment, resample, rotate, transform_seeds
from fashion_tcn.config import AugmentConfig, Config, override

pytestmark = pytest.mark.backend


@pytest.fixture
def images() -> np.ndarray:
    x = np.zeros((16, 28, 28), np.uint8)
    x[:, 6:22, 4:12] = 200  # an off-centre block: a flip or a shift moves it
    return x


def _only(**values) -> AugmentConfig:
    return override(Config(), {f"augment.{k}": v for k, v in values.items()}).resolved().augment


def _train(layer: Augment, images: np.ndarray) -> np.ndarray:
    return np.asarray(layer(images, training=True))


def test_none_preset_means_no_layer():
    assert make_augment(Config().resolved().augment) is None


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_shape_dtype_range_kept(images, preset):
    out = _train(make_augment(_only(preset=preset), seed=1), images)
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255.5


def test_identity_unless_training(images):
    layer = make_augment(_only(preset="strong"), seed=1)
    np.testing.assert_array_equal(np.asarray(layer(images)), images.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(layer(images, training=False)), images)


def test_flip_really_mirrors(images):
    out = _train(make_augment(_only(flip=1.0)), images)
    np.testing.assert_array_equal(out, images[:, :, ::-1])


def test_translation_moves_pixels_and_keeps_background_black(images):
    out = _train(make_augment(_only(translate=0.2), seed=3), images)
    moved = [not np.allclose(o, i) for o, i in zip(out, images, strict=True)]
    assert sum(moved) >= len(images) // 2
    assert out[:, 0, 0].max() == 0  # fill is black, like the data's background


def test_resample_is_keras_bilinear_zoom_and_shift():
    """`resample` (two matrix products) gives what Keras's affine transform gives for the same
    zoom and translation: bilinear, black fill; whole-pixel shifts move pixels exactly."""
    x = np.random.default_rng(0).random((3, 28, 28)).astype("float32")
    scale = np.array([[1.0, 1.0], [0.9, 1.1], [1.05, 0.93]], "float32")  # (down, right)
    move = np.array([[1.0, 0.0], [-2.3, 1.7], [0.6, -0.4]], "float32")
    ours = np.asarray(resample(x, scale, move))
    c = 13.5  # output (col, row) reads input (a0 col + a2, b1 row + b2)
    zero = np.zeros(3)
    a0, b1 = scale[:, 1], scale[:, 0]
    a2, b2 = c * (1 - a0) - move[:, 1], c * (1 - b1) - move[:, 0]
    transforms = np.stack([a0, zero, a2, zero, b1, b2, zero, zero], axis=1).astype("float32")
    keras_way = keras.ops.image.affine_transform(
        x[..., None], transforms, interpolation="bilinear", fill_mode="constant", fill_value=0.0
    )
    np.testing.assert_allclose(ours, np.asarray(keras_way)[..., 0], atol=1e-5)
    np.testing.assert_allclose(ours[0, 1:], x[0, :-1], atol=1e-6)
    np.testing.assert_allclose(ours[0, 0], 0.0)


def test_rotate_is_close_to_keras_rotation():
    """Three shears rotate like Keras's one-step bilinear affine rotation, to within a few grey
    levels (each shear interpolates), and zero degrees changes nothing."""
    rows, columns = np.mgrid[0:28, 0:28]
    blob = 200 * np.exp(-((rows - 10) ** 2) / 30 - ((columns - 16) ** 2) / 8)
    x = np.stack([blob, blob, blob]).astype("float32")
    angles = np.array([0.17, -0.17, 0.0], "float32")
    ours = np.asarray(rotate(x, angles))
    c = 13.5
    cos, sin = np.cos(angles), np.sin(angles)  # output (col, row) reads input (a col + b row + c)
    moves = np.stack(
        [cos, sin, c * (1 - cos - sin), -sin, cos, c * (1 + sin - cos), 0 * cos, 0 * cos], axis=1
    ).astype("float32")
    keras_way = np.asarray(
        keras.ops.image.affine_transform(
            x[..., None], moves, interpolation="bilinear", fill_mode="constant", fill_value=0.0
        )
    )[..., 0]
    assert np.abs(ours - keras_way).mean() < 0.1 * np.abs(keras_way - x).mean()
    assert np.abs(ours - keras_way).max() < 10  # of 200
    np.testing.assert_allclose(ours[2], x[2], atol=1e-4)


def test_erase_removes_pixels(images):
    out = _train(make_augment(_only(erase=1.0), seed=4), images)
    assert (out.sum(axis=(1, 2)) <= images.astype(float).sum(axis=(1, 2)) + 1e-3).all()
    assert (out != images).any()


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_erase_rate_is_the_setting(rate):
    """`--erase p` erases p of the images (a single float p given to Keras's RandomErasing
    erased about p / 2: each image's probability was drawn from U(0, p))."""
    full = np.full((10_000, 28, 28), 200, np.uint8)
    out = _train(make_augment(_only(erase=rate), seed=7), full)
    erased = (out < 199).any(axis=(1, 2)).mean()
    assert abs(erased - rate) < 0.02


def test_transforms_draw_independently():
    """Every transform has its own seed: with one shared seed, same-shaped draws repeat each
    other (rotation angle and zoom factor correlated 1.0 on TensorFlow)."""
    seeds = transform_seeds(0)
    assert len(set(seeds.values())) == len(seeds)
    layer = Augment(translate=0.1, flip=0.5, rotate=10, zoom=0.1, erase=0.5, seed=0)
    images = np.zeros((10_000, 28, 28, 1), "float32")
    layer.build(images.shape[:-1])
    draws = {}
    params = layer.eraser.get_random_transformation(images, training=True)
    for key, value in params.items():
        value = np.asarray(keras.ops.convert_to_numpy(value), np.float64)
        if value.ndim == 0 or value.shape[0] != 10_000:
            continue  # e.g. the input shape
        value = value.reshape(10_000, -1)
        for column in range(value.shape[1]):
            draws[f"erase.{key}.{column}"] = value[:, column]
    flips = keras.random.uniform((10_000,), seed=layer.flip_seed)
    draws["flip"] = np.asarray(keras.ops.convert_to_numpy(flips), np.float64)
    seeds = {"shift": layer.shift_seed, "zoom": layer.zoom_seed, "rotate": layer.rotate_seed}
    for name, seed in seeds.items():
        values = keras.ops.convert_to_numpy(keras.random.uniform((10_000, 2), seed=seed))
        for column, axis in enumerate(("down", "right")):
            draws[f"{name}.{axis}"] = np.asarray(values[:, column], np.float64)
    names = [n for n, v in draws.items() if v.std() > 0]
    assert len(names) >= 5
    corr = np.corrcoef(np.stack([draws[n] for n in names]))
    across = [
        abs(corr[i, j])
        for i in range(len(names))
        for j in range(i)
        if names[i].split(".")[0] != names[j].split(".")[0]
    ]
    assert max(across) < 0.05, max(across)


def test_same_seed_same_augmentation(images):
    cfg = _only(preset="strong")
    first = _train(make_augment(cfg, seed=5), images)
    again = _train(make_augment(cfg, seed=5), images)
    other = _train(make_augment(cfg, seed=6), images)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_config_round_trip():
    layer = Augment(translate=0.1, flip=0.5, erase=0.2, seed=3)
    again = Augment.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


def test_bad_values_rejected():
    with pytest.raises(ValueError, match="flip must be in"):
        _only(flip=1.5)
    with pytest.raises(ValueError, match="unknown augment"):
        _only(preset="wild")


def test_augmentation_lives_in_the_model_and_never_runs_at_evaluation(
    train_tiny, tiny_data_dir, tmp_path
):
    """The saved model holds the Augment layer with the run's settings, and the test accuracy
    equals the model's accuracy on the plain test images."""
    from fashion_tcn.data import load_fashion_mnist

    run = tmp_path / "aug"
    flags = ("--epochs", "1", "--augment", "strong", "--filters", "8", "--dilations", "1,2,4")
    assert train_tiny(run, *flags, test=True) == 0
    model = keras.saving.load_model(run / "model.keras")
    layer = model.get_layer("augment")
    assert (layer.translate, layer.flip, layer.rotate, layer.zoom, layer.erase) == (
        0.1,
        0.5,
        10.0,
        0.1,
        0.5,
    )
    _, test = load_fashion_mnist(tiny_data_dir)
    plain = model.predict(test.images, verbose=0).argmax(axis=1)
    accuracy = json.loads((run / "metrics.json").read_text())["accuracy"]
    assert accuracy == pytest.approx(float((plain == test.labels).mean()))
    twice = model.predict(test.images, verbose=0)
    np.testing.assert_array_equal(twice, model.predict(test.images, verbose=0))
