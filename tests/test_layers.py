"""The TCN layer: causality, receptive field, shapes, config and .keras round trips."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from fashion_tcn.config import covering_dilations, receptive_field
from fashion_tcn.layers import TCN, CausalConv1D, ResidualBlock, StepEncoder

NORMS = ["none", "batch", "layer", "weight"]


def _sequence_model(**kwargs) -> keras.Model:
    inputs = keras.Input((None, 3))
    return keras.Model(inputs, TCN(return_sequences=True, **kwargs)(inputs))


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("skip", [False, True])
def test_future_inputs_never_change_past_outputs(norm, skip):
    model = _sequence_model(
        filters=8, kernel_size=3, dilations=(1, 2, 4), norm=norm, skip_connections=skip
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 40, 3)).astype("float32")
    before = model.predict(x, verbose=0)
    for t in (0, 10, 25, 38):
        changed = x.copy()
        changed[:, t + 1 :] = rng.normal(size=changed[:, t + 1 :].shape)
        after = model.predict(changed, verbose=0)
        np.testing.assert_allclose(after[:, : t + 1], before[:, : t + 1], atol=1e-6)
        assert not np.allclose(after[:, t + 1 :], before[:, t + 1 :])


@pytest.mark.parametrize(
    ("kernel_size", "dilations", "stacks"),
    [(2, (1, 2, 4), 1), (3, (1, 2, 4, 8), 1), (5, (1, 3), 2), (7, (1,), 1)],
)
def test_receptive_field_formula_matches_gradient(kernel_size, dilations, stacks):
    # linear activation: a ReLU that happens to be off would hide a step the structure can see
    layer = TCN(4, kernel_size, dilations, stacks, activation="linear", return_sequences=True)
    steps = layer.receptive_field + 20
    x = tf.Variable(np.random.default_rng(1).normal(size=(1, steps, 2)).astype("float32"))
    with tf.GradientTape() as tape:
        last = layer(x)[:, -1, :]
        total = tf.reduce_sum(last)
    gradient = np.abs(tape.gradient(total, x).numpy()).sum(axis=(0, 2))
    seen = np.flatnonzero(gradient > 0)
    assert layer.receptive_field == receptive_field(kernel_size, list(dilations), stacks)
    assert seen.min() == steps - layer.receptive_field  # exactly the field, not one step more
    assert seen.max() == steps - 1
    assert len(seen) == layer.receptive_field


def test_covering_dilations_is_minimal():
    assert covering_dilations(28, 3) == [1, 2, 4]
    assert covering_dilations(784, 7) == [1, 2, 4, 8, 16, 32, 64]
    assert receptive_field(7, [1, 2, 4, 8, 16, 32], 1) < 784


def test_shapes_and_projection():
    x = keras.ops.ones((2, 28, 5))
    assert TCN(16, dilations=(1, 2))(x).shape == (2, 16)
    assert TCN(16, dilations=(1, 2), return_sequences=True)(x).shape == (2, 28, 16)
    block = ResidualBlock(16, 3, 1)
    block(x)
    assert block.shortcut is not None  # 5 -> 16 channels needs the 1x1 convolution
    same = ResidualBlock(5, 3, 1)
    same(x)
    assert same.shortcut is None


def test_weight_norm_kernel_has_gain_norm():
    conv = CausalConv1D(6, 3, weight_norm=True)
    conv.build((None, 10, 4))
    conv.gain.assign(np.arange(1, 7, dtype="float32"))
    norms = np.linalg.norm(keras.ops.convert_to_numpy(conv.effective_kernel()), axis=(0, 1))
    np.testing.assert_allclose(norms, np.arange(1, 7), rtol=1e-5)


def test_config_round_trip():
    layer = TCN(12, 5, [1, 3, 9], 2, 0.2, "gelu", "layer", True, True, name="t")
    clone = TCN.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.dilations == [1, 3, 9]  # user dilations are kept as given


@pytest.mark.parametrize("norm", NORMS)
def test_keras_file_round_trip_gives_identical_predictions(tmp_path, norm):
    inputs = keras.Input((28, 28))
    x = TCN(8, 3, (1, 2, 4), dropout=0.1, norm=norm, activation="swish")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    x = np.random.default_rng(2).random((4, 28, 28)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_step_encoder_never_mixes_steps_and_round_trips(tmp_path):
    inputs = keras.Input((28, 28))
    model = keras.Model(inputs, StepEncoder(4, 5, "gelu", name="enc")(inputs))
    assert model.output_shape == (None, 28, 14 * 4)
    rng = np.random.default_rng(3)
    x = rng.random((2, 28, 28)).astype("float32")
    before = model.predict(x, verbose=0)
    changed = x.copy()
    changed[:, 9] = rng.random((2, 28))  # a new row 9 changes step 9's features and no other
    after = model.predict(changed, verbose=0)
    others = np.arange(28) != 9
    np.testing.assert_array_equal(after[:, others], before[:, others])
    assert not np.allclose(after[:, 9], before[:, 9])
    shifted = np.roll(x, 2, axis=2)  # a sideways shift moves the features, it does not scramble
    moved = model.predict(shifted, verbose=0).reshape(2, 28, 14, 4)
    np.testing.assert_allclose(
        moved[:, :, 3:12], before.reshape(2, 28, 14, 4)[:, :, 2:11], atol=1e-6
    )
    layer = model.get_layer("enc")
    assert StepEncoder.from_config(layer.get_config()).get_config() == layer.get_config()
    model.save(tmp_path / "e.keras")
    loaded = keras.saving.load_model(tmp_path / "e.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), before)


def test_a_second_step_encoder_stage_halves_the_row_and_doubles_the_channels(tmp_path):
    inputs = keras.Input((28, 28))
    model = keras.Model(inputs, StepEncoder(4, stages=2, name="enc")(inputs))
    assert model.output_shape == (None, 28, 7 * 8)
    assert [conv.kernel.shape for conv in model.get_layer("enc").convs] == [
        (1, 3, 1, 4),
        (1, 3, 4, 4),
        (1, 3, 4, 8),
        (1, 3, 8, 8),
    ]
    rng = np.random.default_rng(5)
    x = rng.random((2, 28, 28)).astype("float32")
    before = model.predict(x, verbose=0)
    changed = x.copy()
    changed[:, 20] = rng.random((2, 28))
    after = model.predict(changed, verbose=0)
    others = np.arange(28) != 20
    np.testing.assert_array_equal(after[:, others], before[:, others])
    model.save(tmp_path / "e2.keras")
    loaded = keras.saving.load_model(tmp_path / "e2.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), before)


def test_mean_pooling_is_the_causal_running_mean():
    """Step t's readout averages steps 0..t only; the plain call gives the mean of all."""
    tcn = TCN(8, 3, (1, 2, 4), pooling="mean")
    x = np.random.default_rng(6).normal(size=(2, 20, 3)).astype("float32")
    means = keras.ops.convert_to_numpy(tcn(x, all_steps=True))
    tcn.pooling = "last"  # same weights, raw per-step outputs
    raw = keras.ops.convert_to_numpy(tcn(x, all_steps=True))
    tcn.pooling = "mean"
    np.testing.assert_allclose(means, np.cumsum(raw, 1) / np.arange(1, 21)[:, None], atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tcn(x)), raw.mean(axis=1), atol=1e-5)
    assert TCN.from_config(tcn.get_config()).pooling == "mean"
    with pytest.raises(ValueError, match="unknown pooling"):
        TCN(pooling="max")


def test_a_step_encoder_saved_before_stages_existed_still_loads():
    """tests/data holds a one-stage encoder saved by the code before `stages` (commit 72a6a67):
    its weights are stored under the attribute names, so renaming them would break old runs."""
    data = Path(__file__).parent / "data"
    model = keras.saving.load_model(data / "step_encoder_one_stage.keras")
    x = np.random.default_rng(0).random((1, 28, 28)).astype("float32")
    expected = np.load(data / "step_encoder_one_stage.npy")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)
    assert model.get_layer("enc").stages == 1


@pytest.mark.parametrize(
    ("steps", "options"),
    [
        (784, {"kernel_size": 7, "dilations": [2**i for i in range(8)], "norm": "weight"}),
        (28, {"kernel_size": 3, "dilations": [1, 2, 4, 8], "stacks": 2, "norm": "layer"}),
        (28, {"kernel_size": 2, "dilations": [1, 2, 4, 8, 16], "skip_connections": True}),
        (30, {"kernel_size": 2, "dilations": [3, 6, 2, 12]}),  # gcds 1, 2, 2, 12
        (31, {"kernel_size": 3, "dilations": [8, 4, 2, 1]}),  # nothing to thin
    ],
)
def test_last_step_path_equals_the_full_pass(steps, options):
    """The last-step output thins the sequence before the last stack's blocks (a quarter of
    the work on pixels): it must equal the full pass's last step, in training too."""
    tcn = TCN(6, **options)
    x = np.random.default_rng(0).random((3, steps, 2)).astype("float32")
    for training in (False, True):  # no dropout: training changes nothing random
        last = np.asarray(tcn(x, training=training))
        full = np.asarray(tcn(x, training=training, all_steps=True))[:, -1]
        np.testing.assert_allclose(last, full, atol=2e-6)


def test_last_step_path_gradients_equal_the_full_pass():
    tcn = TCN(4, kernel_size=3, dilations=[1, 2, 4, 8], norm="weight")
    x = tf.constant(np.random.default_rng(1).random((2, 40, 3)), tf.float32)
    grads = []
    for all_steps in (False, True):
        with tf.GradientTape() as tape:
            out = tcn(x, all_steps=all_steps)
            loss = tf.reduce_sum(tf.square(out if not all_steps else out[:, -1]))
        grads.append(tape.gradient(loss, tcn.trainable_weights))
    for thin, full in zip(*grads, strict=True):
        np.testing.assert_allclose(thin.numpy(), full.numpy(), atol=1e-5)
