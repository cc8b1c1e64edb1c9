"""Augmentation: shapes, dtype, range, seeding, real changes, and never at evaluation."""

import json

import numpy as np
import pytest

import fashion_tcn.train as train_module
from fashion_tcn.augment import make_augmenter
from fashion_tcn.cli import main
from fashion_tcn.config import AugmentConfig, Config, override
from fashion_tcn.sequences import make_dataset


@pytest.fixture
def images() -> np.ndarray:
    x = np.zeros((16, 28, 28), np.uint8)
    x[:, 6:22, 4:12] = 200  # an off-centre block: a flip or a shift moves it
    return x


def _only(**values) -> AugmentConfig:
    return override(Config(), {f"augment.{k}": v for k, v in values.items()}).resolved().augment


def test_none_preset_means_no_augmenter():
    assert make_augmenter(Config().resolved().augment) is None


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_shape_dtype_range_kept(images, preset):
    out = np.asarray(make_augmenter(_only(preset=preset), seed=1)(images))
    assert out.shape == images.shape and out.dtype == np.uint8
    assert out.min() >= 0 and out.max() <= 255


def test_flip_really_mirrors(images):
    out = np.asarray(make_augmenter(_only(flip=1.0))(images))
    np.testing.assert_array_equal(out, images[:, :, ::-1])


def test_translation_moves_pixels_and_keeps_background_black(images):
    out = np.asarray(make_augmenter(_only(translate=0.2), seed=3)(images))
    moved = [not np.array_equal(o, i) for o, i in zip(out, images, strict=True)]
    assert sum(moved) >= len(images) // 2
    assert out[:, 0, 0].max() == 0  # fill is black, like the data's background


def test_erase_removes_pixels(images):
    out = np.asarray(make_augmenter(_only(erase=1.0), seed=4)(images))
    assert (out.astype(int).sum(axis=(1, 2)) <= images.astype(int).sum(axis=(1, 2))).all()
    assert (out != images).any()


def test_same_seed_same_augmentation(images):
    cfg = _only(preset="strong")
    first = np.asarray(make_augmenter(cfg, seed=5)(images))
    again = np.asarray(make_augmenter(cfg, seed=5)(images))
    other = np.asarray(make_augmenter(cfg, seed=6)(images))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_labels_untouched_in_pipeline(images):
    labels = np.arange(16) % 10
    ds = make_dataset(
        images, labels, "rows", batch_size=16, augment=make_augmenter(_only(preset="strong"))
    )
    x, y = next(iter(ds))
    np.testing.assert_array_equal(y.numpy(), labels)
    assert x.shape == (16, 28, 28)


def test_bad_values_rejected():
    with pytest.raises(ValueError, match="flip must be in"):
        _only(flip=1.5)
    with pytest.raises(ValueError, match="unknown augment preset"):
        _only(preset="wild")


def test_augmentation_never_runs_at_evaluation(train_tiny, tiny_data_dir, tmp_path, monkeypatch):
    """Every dataset but the shuffled training one is built without an augmenter, and test
    accuracy equals the model's accuracy on the plain test images."""
    calls = []

    def recording(*args, **kwargs):
        calls.append((kwargs.get("shuffle", False), kwargs.get("augment")))
        return make_dataset(*args, **kwargs)

    monkeypatch.setattr(train_module, "make_dataset", recording)
    run = tmp_path / "aug"
    assert (
        train_tiny(
            run, "--epochs", "1", "--augment", "strong", "--filters", "8", "--dilations", "1,2,4"
        )
        == 0
    )
    assert main(["evaluate", str(run)]) == 0
    training = [augment for shuffled, augment in calls if shuffled]
    others = [augment for shuffled, augment in calls if not shuffled]
    assert len(training) == 1 and training[0] is not None
    assert len(others) == 3 and all(augment is None for augment in others)  # val, test, test

    import keras

    from fashion_tcn.data import load_fashion_mnist

    _, test = load_fashion_mnist(tiny_data_dir)
    model = keras.saving.load_model(run / "model.keras")
    plain = model.predict(test.images.astype("float32") / 255, verbose=0).argmax(axis=1)
    accuracy = json.loads((run / "metrics.json").read_text())["accuracy"]
    assert accuracy == pytest.approx(float((plain == test.labels).mean()))
