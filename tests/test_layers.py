"""The TCN layer: causality, receptive field, shapes, config and .keras round trips."""

from pathlib import Path

import keras
import numpy as np
import pytest

from fashion_tcn import layers
from fashion_tcn.config import covering_dilations, receptive_field
from fashion_tcn.encoder import StepEncoder
from fashion_tcn.layers import TCN, CausalConv1D, ResidualBlock

pytestmark = pytest.mark.backend

NORMS = ["none", "batch", "layer", "weight"]


def _changed_outputs(tcn, x: np.ndarray, t: int, training: bool) -> tuple[bool, bool]:
    """Whether new inputs after step t change the outputs up to t, and after t."""
    rng = np.random.default_rng(t)
    changed = x.copy()
    changed[:, t + 1 :] = rng.normal(size=changed[:, t + 1 :].shape)
    before, after = (
        keras.ops.convert_to_numpy(tcn(v, training=training, all_steps=True)) for v in (x, changed)
    )
    past = not np.allclose(after[:, : t + 1], before[:, : t + 1], atol=1e-6)
    return past, not np.allclose(after[:, t + 1 :], before[:, t + 1 :])


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_future_inputs_never_change_past_outputs(norm, skip, training):
    """Causal at inference for every norm, and in training (what the anytime loss trains) for
    all but batch norm, whose statistics span every step (below)."""
    if training and norm == "batch":
        pytest.skip("not causal in training: test_batch_norm_in_training_sees_the_future")
    tcn = TCN(8, kernel_size=3, dilations=(1, 2, 4), norm=norm, skip_connections=skip)
    x = np.random.default_rng(0).normal(size=(2, 40, 3)).astype("float32")
    for t in (0, 10, 25, 38):
        assert _changed_outputs(tcn, x, t, training) == (False, True), t


def test_batch_norm_in_training_sees_the_future():
    """Why `anytime_loss` refuses `norm: batch` (config.check_receptive_field): in training,
    batch statistics over batch x time let step t's output depend on later steps."""
    tcn = TCN(8, kernel_size=3, dilations=(1, 2, 4), norm="batch")
    x = np.random.default_rng(0).normal(size=(2, 40, 3)).astype("float32")
    assert _changed_outputs(tcn, x, 10, training=True)[0]


@pytest.mark.parametrize(
    ("kernel_size", "dilations", "stacks"),
    [(2, (1, 2, 4), 1), (3, (1, 2, 4, 8), 1), (5, (1, 3), 2), (7, (1,), 1)],
)
def test_receptive_field_is_exactly_the_steps_the_last_output_sees(kernel_size, dilations, stacks):
    # linear activation: a ReLU that happens to be off would hide a step the structure can see
    layer = TCN(4, kernel_size, dilations, stacks, activation="linear")
    steps = layer.receptive_field + 20
    x = np.random.default_rng(1).normal(size=(1, steps, 2)).astype("float32")
    nudged = np.repeat(x, steps, axis=0)  # sequence i has step i changed
    nudged[np.arange(steps), np.arange(steps)] += 1.0
    last = keras.ops.convert_to_numpy(layer(np.concatenate([x, nudged])))
    seen = np.flatnonzero(np.abs(last[1:] - last[0]).max(axis=1) > 1e-6)
    assert layer.receptive_field == receptive_field(kernel_size, list(dilations), stacks)
    assert seen.min() == steps - layer.receptive_field  # exactly the field, not one step more
    assert seen.max() == steps - 1
    assert len(seen) == layer.receptive_field


def test_covering_dilations_is_minimal():
    assert covering_dilations(28, 3) == [1, 2, 4]
    assert covering_dilations(784, 7) == [1, 2, 4, 8, 16, 32, 64]
    assert receptive_field(7, [1, 2, 4, 8, 16, 32], 1) < 784


@pytest.mark.parametrize("channels", [5, 16])
def test_the_shortcut_projects_only_when_the_width_changes(channels):
    """With the residual branch zeroed, a block is act(shortcut): the identity when the width
    stays, a learned 1x1 convolution (its own weights) when it changes."""
    x = np.random.default_rng(3).normal(size=(2, 28, channels)).astype("float32")
    block = ResidualBlock(16, 3, 1, activation="linear")
    block(x)
    for conv in block.convs:
        for weight in conv.weights:
            weight.assign(np.zeros(weight.shape))
    out = keras.ops.convert_to_numpy(block(x)[0])
    if channels == 16:
        np.testing.assert_allclose(out, x, atol=1e-6)
        assert len(block.weights) == 4  # two kernels, two biases
    else:
        kernel, bias = (keras.ops.convert_to_numpy(w) for w in block.shortcut.weights)
        np.testing.assert_allclose(out, x @ kernel[0] + bias, atol=1e-5)
    assert TCN(16, dilations=(1, 2))(x).shape == (2, 16)
    assert TCN(16, dilations=(1, 2), return_sequences=True)(x).shape == (2, 28, 16)


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


def test_last_step_path_trains_like_the_full_pass():
    """One SGD step through the thinned last-step path moves the weights as one through the
    full pass does: the gradients are equal (on every backend, no GradientTape). A smooth
    activation and a fixed seed: with ReLU, a unit dead on both inputs (drawn by whatever seed
    the tests before left) has no gradient, and the check that every weight moved failed."""
    keras.utils.set_random_seed(3)
    tcn = TCN(4, kernel_size=3, dilations=[1, 2, 4, 8], norm="weight", activation="tanh")
    inputs = keras.Input((40, 3))
    thin = keras.Model(inputs, tcn(inputs))
    full = keras.Model(inputs, tcn(inputs, all_steps=True)[:, -1])
    x = np.random.default_rng(1).random((2, 40, 3)).astype("float32")
    y = np.zeros((2, 4), "float32")
    start = [keras.ops.convert_to_numpy(w) for w in tcn.weights]
    trained = []
    for model in (thin, full):
        tcn.set_weights(start)
        model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
        model.train_on_batch(x, y)
        trained.append([keras.ops.convert_to_numpy(w) for w in tcn.weights])
    for a, b, w0 in zip(*trained, start, strict=True):
        assert not np.allclose(a, w0)
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("dilation", [2, 3, 64, 128])
def test_folded_dilated_convolution_equals_the_dilated_one(dilation):
    """The fold (d interleaved subsequences in the batch, undilated) that long sequences take on
    TensorFlow: the same outputs and gradients as the dilated convolution, for a length that is
    no multiple of d."""
    conv = CausalConv1D(4, 7, dilation)
    x = keras.ops.convert_to_tensor(np.random.default_rng(0).normal(size=(2, 300, 3)), "float32")
    conv.build(x.shape)
    padded = keras.ops.pad(x, ((0, 0), (6 * dilation, 0), (0, 0)))
    expected = keras.ops.conv(padded, conv.kernel, dilation_rate=dilation)
    np.testing.assert_allclose(conv._folded(x, dilation), expected, atol=1e-5)
    np.testing.assert_allclose(conv(x), expected + conv.bias, atol=1e-5)  # the path it takes
    assert layers._fold(300) == (keras.backend.backend() == "tensorflow")
    assert not layers._fold(28)  # short sequences (rows) keep the dilated convolution
