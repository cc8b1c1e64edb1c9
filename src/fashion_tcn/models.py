"""Classifiers built from a resolved config: images (or sequences) in, 10 class probabilities out.

`build_classifier` is what `train` saves: uint8 images in, then [Augment, training only] ->
ToSequence -> standardise -> network -> Dense softmax, so the model carries its own
preprocessing and the input path only slices arrays. `build_model` is the same network taking
sequences, which is what runs saved before 0.2 hold and what the benchmarks time.

One registry, one signature, so the TCN and its baselines share data, training and metrics:
    tcn    the causal dilated residual TCN (layers.py)
    lstm   one LSTM layer, sized to about RNN_PARAMETERS like the TCN it is compared with
    gru    one GRU layer, sized the same way
    cnn    a small 2-D convnet on the 28x28 image: a reference ceiling, not a sequence model
Every model starts by standardising with the training set's mean and variance.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np

from fashion_tcn.augment import make_augment
from fashion_tcn.config import Config, ConfigError, ModelConfig
from fashion_tcn.encoder import StepEncoder
from fashion_tcn.layers import TCN
from fashion_tcn.sequences import ToSequence, to_sequences

NUM_CLASSES = 10
RNN_PARAMETERS = 70_000  # the Bai et al. (2018) budget for sequential MNIST


def rnn_units(kind: str, features: int, budget: int = RNN_PARAMETERS) -> int:
    """Largest hidden size whose recurrent layer plus classifier fits in `budget` parameters."""
    gates = {"lstm": 4, "gru": 3}[kind]
    extra_bias = 1 if kind == "gru" else 0  # Keras GRU (reset_after) has two bias vectors

    def parameters(units: int) -> int:
        cell = gates * (units * (units + features) + units * (1 + extra_bias))
        return cell + (units + 1) * NUM_CLASSES

    units = 1
    while parameters(units + 1) <= budget:
        units += 1
    return units


def _standardize(x, mean: float, variance: float):
    return keras.layers.Normalization(mean=mean, variance=variance, name="standardize")(x)


def _classify(x):
    """Softmax in float32 whatever the precision policy: bf16 probabilities round to 1."""
    return keras.layers.Dense(
        NUM_CLASSES, activation="softmax", dtype="float32", name="classifier"
    )(x)


def _tcn(cfg: ModelConfig, x, anytime: bool = False):
    """(B, T, F) standardised -> [StepEncoder] -> TCN -> (B, filters), or (B, T, filters) with
    `anytime`: then the classifier runs on every step, the prediction after each prefix, for
    training with `CrossEntropy(anytime=...)`; the last step is the usual prediction."""
    if cfg.step_filters:
        x = StepEncoder(
            cfg.step_filters, activation=cfg.activation, stages=cfg.step_stages, name="step_encoder"
        )(x)
    return TCN(
        cfg.filters,
        cfg.kernel_size,
        cfg.dilations,
        cfg.stacks,
        cfg.dropout,
        cfg.activation,
        cfg.norm,
        cfg.skip_connections,
        pooling=cfg.pooling,
        name="tcn",
    )(x, all_steps=anytime)


def _rnn(cfg: ModelConfig, x, anytime: bool = False):
    """LSTM or GRU, last state."""
    units = cfg.units or rnn_units(cfg.kind, x.shape[-1])
    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cfg.kind]
    return layer(units, dropout=cfg.dropout or 0.0, name=cfg.kind)(x)


def _cnn(cfg: ModelConfig, x, anytime: bool = False):
    """Two conv-conv-pool stages (32 and 64 channels, batch norm) -> global pool."""
    if tuple(x.shape[1:]) != (28, 28):
        raise ValueError("the cnn reads 28x28 images (rows order)")
    x = keras.layers.Reshape((28, 28, 1))(x)
    for width in (32, 64):
        for _ in range(2):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation(cfg.activation)(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Dropout(cfg.dropout or 0.0)(x)
    return keras.layers.GlobalAveragePooling2D()(x)


NETWORKS = {"tcn": _tcn, "lstm": _rnn, "gru": _rnn, "cnn": _cnn}


def _network_model(cfg: ModelConfig, inputs, x, mean: float, variance: float, anytime: bool):
    steps, features = x.shape[1:]
    x = NETWORKS["tcn" if anytime else cfg.kind](cfg, _standardize(x, mean, variance), anytime)
    return keras.Model(inputs, _classify(x), name=f"{cfg.kind}_{steps}x{features}")


def build_model(
    cfg: ModelConfig,
    steps: int,
    features: int,
    mean: float = 0.0,
    variance: float = 1.0,
    anytime: bool = False,
) -> keras.Model:
    """Sequences (B, steps, features) in [0, 1] -> standardise -> network -> Dense softmax."""
    inputs = keras.Input((steps, features), name="sequence")
    return _network_model(cfg, inputs, inputs, mean, variance, anytime)


@contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Build layers under a precision policy; Keras keeps it per layer, so saved models keep it.
    "auto" (not yet resolved by `train`) keeps the global policy."""
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(previous if name == "auto" else name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_classifier(
    cfg: Config,
    mean: float = 0.0,
    variance: float = 1.0,
    permutation: np.ndarray | None = None,
) -> keras.Model:
    """The model `train` fits and saves, from a resolved config: (B, 28, 28) uint8 images ->
    [Augment, training only] -> ToSequence -> standardise -> network -> (B, 10) probabilities
    ((B, T, 10) with an anytime loss). Built under `cfg.train.precision`."""
    inputs = keras.Input((28, 28), dtype="uint8", name="image")
    x = inputs
    with dtype_policy(cfg.train.precision):
        augment = make_augment(cfg.augment, cfg.train.seed)
        if augment is not None:
            x = augment(x)
        x = ToSequence(cfg.data.sequence, permutation, name="to_sequence")(x)
        return _network_model(cfg.model, inputs, x, mean, variance, cfg.train.anytime_loss > 0)


def load_model(path: Path) -> keras.Model:
    """A saved model, or a ConfigError naming the file: Keras reports a truncated `.keras` file
    as "File not found" and other damage as whatever its zip, JSON or HDF5 reader raised."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # the readers' many error types all mean one thing here
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise ConfigError(f"{path}: damaged or not a Keras model file ({reason})") from None


def takes_images(model: keras.Model) -> bool:
    """Models trained since 0.2 take images; older ones take sequences."""
    return model.inputs[0].name == "image"


def model_inputs(model: keras.Model, images: np.ndarray, mode: str, permutation=None):
    """What `model` takes, from (N, 28, 28) uint8 images."""
    if takes_images(model):
        return images
    return keras.ops.convert_to_numpy(to_sequences(images, mode, permutation))


@keras.saving.register_keras_serializable(package="fashion_tcn")
class CrossEntropy(keras.losses.Loss):
    """Cross-entropy on class ids, optionally label-smoothed and over every step (anytime).

    y_true (B,) class ids; y_pred (B, 10) probabilities, or (B, T, 10) from an anytime model:
    then the loss is the last step's plus `anytime` x the mean over all earlier steps, which
    trains the predictions made before the sequence ends. `label_smoothing` moves that share of
    each target onto all classes evenly (Szegedy et al., 2016) against over-confidence; Keras's
    sparse cross-entropy has no such option.
    """

    def __init__(
        self,
        anytime: float = 0.0,
        label_smoothing: float = 0.0,
        name: str = "cross_entropy",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.anytime = anytime
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        target = keras.ops.one_hot(keras.ops.cast(y_true, "int32"), keras.ops.shape(y_pred)[-1])
        if len(y_pred.shape) == 3:
            target = keras.ops.repeat(keras.ops.expand_dims(target, 1), y_pred.shape[1], axis=1)
        loss = keras.losses.categorical_crossentropy(
            target, y_pred, label_smoothing=self.label_smoothing
        )  # (B,) or (B, T)
        if len(y_pred.shape) == 2:
            return loss
        return loss[:, -1] + self.anytime * keras.ops.mean(loss[:, :-1], axis=1)

    def get_config(self):
        return {
            **super().get_config(),
            "anytime": self.anytime,
            "label_smoothing": self.label_smoothing,
        }


@keras.saving.register_keras_serializable(package="fashion_tcn")
class LastStepAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Accuracy of the final prediction of an anytime model (B, T, 10)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_true, y_pred[:, -1], sample_weight)


def final_probabilities(probs: np.ndarray) -> np.ndarray:
    """(N, 10) from any classifier here; anytime models give (N, T, 10): take the last step."""
    return probs[:, -1] if probs.ndim == 3 else probs


def step_predictions(model: keras.Model, inputs, steps=None) -> np.ndarray:
    """(B, T, F) -> (B, T, 10): a TCN classifier's prediction after each step, in one parallel
    pass (causality: step t's output has seen steps 0..t only). `steps` keeps only those
    (0-based) step indices: (B, len(steps), 10). `inputs` are what the model takes: images
    (then its `to_sequence` layer makes the sequences) or sequences."""
    x = model.get_layer("to_sequence")(inputs) if takes_images(model) else inputs
    x = model.get_layer("standardize")(x)
    if any(layer.name == "step_encoder" for layer in model.layers):
        x = model.get_layer("step_encoder")(x)
    x = model.get_layer("tcn")(x, all_steps=True)
    if steps is not None:
        x = keras.ops.take(x, np.asarray(steps), axis=1)
    return keras.ops.convert_to_numpy(model.get_layer("classifier")(x))
