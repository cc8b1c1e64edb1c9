"""Streaming inference equals the full pass at every step."""

import keras
import numpy as np
import pytest

from fashion_tcn import ringstep
from fashion_tcn.config import ACTIVATIONS, NORMS, ModelConfig
from fashion_tcn.models import build_model, step_predictions
from fashion_tcn.stream import StreamingClassifier, flops_per_step, state_size

pytestmark = [pytest.mark.backend, pytest.mark.minutes(1)]


def _model(
    norm: str,
    activation: str = "relu",
    skip: bool = False,
    steps: int = 60,
    pooling: str = "last",
) -> keras.Model:
    cfg = ModelConfig(
        filters=6,
        kernel_size=3,
        dilations=[1, 2, 4],
        stacks=1,
        dropout=0.1,
        norm=norm,
        activation=activation,
        skip_connections=skip,
        pooling=pooling,
    )
    model = build_model(cfg, steps, 2, mean=0.4, variance=0.09)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial statistics, so batch norm is really exercised
        for w in layer.weights:
            if "moving_variance" in w.path:
                w.assign(rng.uniform(0.5, 2.0, w.shape))
            elif "moving_mean" in w.path or "gain" in w.path:
                w.assign(rng.normal(size=w.shape))
    return model


@pytest.mark.parametrize("norm", ["none", "batch", "layer", "weight"])
@pytest.mark.parametrize(
    "activation", ["relu", "gelu", "elu", "selu", "tanh", "swish", "mish", "leaky_relu"]
)
def test_streaming_equals_full_pass(norm, activation):
    model = _model(norm, activation)
    x = np.random.default_rng(1).random((3, 60, 2)).astype("float32")
    full = step_predictions(model, x)
    np.testing.assert_allclose(full[:, -1], model.predict(x, verbose=0), atol=1e-6)
    stream = StreamingClassifier(model, batch=3)
    assert stream.engine == "numpy"  # float32: NumPy's ring buffers
    np.testing.assert_allclose(stream.run(x), full, atol=1e-5)


@pytest.mark.parametrize("norm", NORMS)
def test_the_keras_engine_streams_the_same(norm):
    model = _model(norm, "gelu", pooling="mean")
    x = np.random.default_rng(5).random((2, 60, 2)).astype("float32")
    streamed = StreamingClassifier(model, batch=2, engine="keras").run(x)
    np.testing.assert_allclose(streamed, step_predictions(model, x), atol=1e-5)
    numpy_engine = StreamingClassifier(model, batch=2, engine="numpy")
    np.testing.assert_allclose(numpy_engine.run(x), streamed, atol=1e-5)
    with pytest.raises(ValueError, match="engine"):
        StreamingClassifier(model, engine="torch")


@pytest.mark.parametrize(
    ("norm", "activation", "skip", "pooling"),
    [
        ("batch", "relu", False, "last"),
        ("layer", "gelu", True, "mean"),
        ("weight", "mish", False, "mean"),
    ],
)
def test_the_tflite_engine_streams_the_same(norm, activation, skip, pooling):
    model = _model(norm, activation, skip=skip, pooling=pooling)
    if keras.backend.backend() != "tensorflow":
        with pytest.raises(ValueError, match="tflite engine needs Keras on TensorFlow"):
            StreamingClassifier(model, engine="tflite")
        return
    x = np.random.default_rng(7).random((2, 60, 2)).astype("float32")
    full = step_predictions(model, x)
    stream = StreamingClassifier(model, batch=2, engine="tflite")
    np.testing.assert_allclose(stream.run(x), full, atol=1e-5)
    stream.reset()  # the caches live in the interpreter: a reset must reach them
    np.testing.assert_allclose(stream.run(x[:, :20]), full[:, :20], atol=1e-5)
    other = stream.fresh()  # an interpreter of its own
    np.testing.assert_allclose(other.run(x), full, atol=1e-5)
    np.testing.assert_allclose(stream.run(x[:, 20:]), full[:, 20:], atol=1e-5)
    if norm == "batch":  # once: another batch size is compiled again (seconds)
        stream.reset(1)
        np.testing.assert_allclose(stream.run(x[:1]), full[:1], atol=1e-5)


def test_numpy_activations_are_keras_activations():
    assert set(ringstep.ACTIVATIONS) == set(ACTIVATIONS)
    x = np.linspace(-120, 120, 2001, dtype="float32")  # far enough out to overflow an exp
    for name, function in ringstep.ACTIVATIONS.items():
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            ours = function(x)
        expected = keras.ops.convert_to_numpy(keras.activations.get(name)(x))
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6, err_msg=name)


def test_fresh_streams_share_weights_not_state():
    model = _model("layer")
    x = np.random.default_rng(6).random((1, 60, 2)).astype("float32")
    first = StreamingClassifier(model, batch=1)
    first.run(x[:, :30])
    second = first.fresh()
    assert second.steps_seen == 0 and first.steps_seen == 30
    np.testing.assert_allclose(second.run(x), step_predictions(model, x), atol=1e-5)
    np.testing.assert_allclose(first.run(x[:, 30:]), step_predictions(model, x)[:, 30:], atol=1e-5)


def test_a_reset_numpy_stream_starts_over():
    """Reset clears the ring buffers (and mean pooling's running sum) in place; a copy made
    before keeps streaming on buffers of its own."""
    model = _model("layer", pooling="mean")
    x = np.random.default_rng(5).random((2, 40, 2)).astype("float32")
    full = step_predictions(model, x)
    stream = StreamingClassifier(model, batch=2, engine="numpy")
    stream.run(x[:, :25])
    other = stream.fresh()
    other.run(x[:, :10])
    stream.reset()
    np.testing.assert_allclose(stream.run(x), full, atol=1e-5)
    np.testing.assert_allclose(other.run(x[:, 10:]), full[:, 10:], atol=1e-5)
    stream.reset(1)
    np.testing.assert_allclose(stream.run(x[1:]), full[1:], atol=1e-5)


def test_skip_connections_stream():
    model = _model("layer", skip=True)
    x = np.random.default_rng(2).random((2, 60, 2)).astype("float32")
    np.testing.assert_allclose(
        StreamingClassifier(model, 2).run(x), step_predictions(model, x), atol=1e-5
    )


def _row_model(norm: str, **options) -> tuple[ModelConfig, keras.Model]:
    """A small row TCN with a step encoder (3 filters), and its config."""
    cfg = ModelConfig(filters=6, kernel_size=3, dilations=[1, 2, 4], stacks=1, dropout=0, norm=norm)
    cfg.step_filters = 3
    for name, value in options.items():
        setattr(cfg, name, value)
    return cfg, build_model(cfg, 28, 28, mean=0.3, variance=0.1)


@pytest.mark.parametrize("stages", [1, 2])
def test_step_encoder_streams(stages):
    cfg, model = _row_model("layer", step_stages=stages)
    x = np.random.default_rng(4).random((2, 28, 28)).astype("float32")
    full = step_predictions(model, x)
    np.testing.assert_allclose(full[:, -1], model.predict(x, verbose=0), atol=1e-6)
    stream = StreamingClassifier(model, batch=2)
    np.testing.assert_allclose(stream.run(x), full, atol=1e-5)
    width = 28 // 2**stages * 3 * 2 ** (stages - 1)  # what the encoder hands the TCN
    without = build_model(ModelConfig(**{**vars(cfg), "step_filters": 0}), 28, width)
    encoder = 2 * 28 * (3 * 1 * 3 + 3 * 3 * 3)  # (1, 3) convolutions 1 -> 3 -> 3, per pixel
    if stages == 2:  # then 3 -> 6 -> 6 on the 14 pooled positions
        encoder += 2 * 14 * (3 * 3 * 6 + 3 * 6 * 6)
    assert flops_per_step(model) == flops_per_step(without) + encoder


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_chunks_and_reset(pooling):
    model = _model("layer", pooling=pooling)
    x = np.random.default_rng(3).random((2, 60, 2)).astype("float32")
    stream = StreamingClassifier(model, batch=2)
    chunked = np.concatenate([stream.run(x[:, :25]), stream.run(x[:, 25:])], axis=1)
    np.testing.assert_allclose(chunked, step_predictions(model, x), atol=1e-5)
    stream.reset()
    assert stream.steps_seen == 0
    np.testing.assert_array_equal(stream.run(x[:, :25]), chunked[:, :25])  # a fresh start


def test_flops_per_step_is_one_column_of_the_full_pass():
    model = _model("none", steps=784)
    conv = 2 * 3 * 6 * 6  # kernel x in x out, 2 flops per multiply-add
    first = 2 * 3 * 2 * 6 + 2 * 2 * 6  # first conv reads 2 features; 1x1 shortcut 2 -> 6
    assert flops_per_step(model) == first + 5 * conv + 2 * 6 * 10
    # caches: (k - 1) x dilation steps of each convolution's input: 2 then 6 channels
    assert state_size(model) == 2 * 2 + 2 * 6 + 2 * (4 + 8) * 6
    assert state_size(_model("none", pooling="mean")) == state_size(model) + 6 + 1


def test_non_tcn_model_is_refused():
    inputs = keras.Input((5, 2))
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="TCN"):
        StreamingClassifier(model)


def test_anytime_training_writes_the_curve_and_still_streams(train_tiny, tiny_data_dir, tmp_path):
    import csv
    import json

    from fashion_tcn.predict import Predictor

    run = tmp_path / "anytime"
    assert (
        train_tiny(
            run,
            "--epochs",
            "2",
            "--filters",
            "8",
            "--dilations",
            "1,2,4",
            "--anytime-loss",
            "0.5",
            "--lr",
            "0.01",
            test=True,
        )
        == 0
    )
    rows = list(csv.DictReader((run / "anytime.csv").open()))
    assert [float(r["fraction"]) for r in rows] == pytest.approx(
        [0.1 * i for i in range(1, 11)], abs=0.02
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert float(rows[-1]["accuracy"]) == pytest.approx(metrics["accuracy"])
    model = keras.saving.load_model(run / "model.keras")
    assert model.output_shape == (None, 28, 10)  # a prediction after every row
    from fashion_tcn.data import load_fashion_mnist

    # real images, whose rows differ: a cache one step out of line would show (zeros hide it)
    images = load_fashion_mnist(tiny_data_dir)[1].images[:4]
    x = Predictor(run).sequences(images)
    full = model.predict(images, verbose=0)  # the model takes images; the stream, sequences
    assert np.abs(np.diff(full, axis=1)).max() > 1e-3  # the prediction moves as rows arrive
    stream = StreamingClassifier(model, 4)
    chunks = [stream.run(x[:, :5]), stream.run(x[:, 5:])]  # the state carries between calls
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), full, atol=1e-5)
    stream.reset()
    one_by_one = np.stack([stream.step(x[:, t]) for t in range(x.shape[1])], axis=1)
    np.testing.assert_allclose(one_by_one, full, atol=1e-5)


def test_anytime_loss_needs_a_tcn_without_batch_norm():
    from fashion_tcn.config import Config, ConfigError, override

    with pytest.raises(ConfigError, match="anytime_loss needs a causal TCN"):
        override(Config(), {"model.kind": "gru", "train.anytime_loss": 0.5}).resolved()
    with pytest.raises(ConfigError, match="batch norm's training statistics span every step"):
        override(Config(), {"model.norm": "batch", "train.anytime_loss": 0.5}).resolved()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TFLite needs TensorFlow")
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_exported_step_streams_in_tflite_like_the_full_pass(tmp_path, pooling):
    import tensorflow as tf

    from fashion_tcn.export import export_step

    _, model = _row_model("weight", pooling=pooling)
    x = np.random.default_rng(5).random((2, 28, 28)).astype("float32")
    full = step_predictions(model, x)

    runner = tf.lite.Interpreter(str(export_step(model, tmp_path / "step.tflite")))
    step = runner.get_signature_runner("step")
    state = {
        f"state_{i}": np.zeros((2, *shape), "float32")
        for i, shape in enumerate(model.get_layer("tcn").cache_shapes())
    }
    streamed = []
    for t in range(28):
        out = step(step=x[:, t : t + 1], **state)
        state = {name: out[name] for name in state}
        streamed.append(out["probabilities"][:, 0])
    np.testing.assert_allclose(np.stack(streamed, axis=1), full, atol=1e-5)
