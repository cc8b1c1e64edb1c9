"""Classifiers built from a resolved `ModelConfig`: sequence in, 10 class probabilities out.

One registry, one signature, so the TCN and its baselines share data, training and metrics:
    tcn    the causal dilated residual TCN (layers.py)
    lstm   one LSTM layer, sized to about RNN_PARAMETERS like the TCN it is compared with
    gru    one GRU layer, sized the same way
    cnn    a small 2-D convnet on the 28x28 image: a reference ceiling, not a sequence model
Every model starts by standardising with the training set's mean and variance.
"""

from __future__ import annotations

import keras
import numpy as np

from fashion_tcn.config import ModelConfig
from fashion_tcn.layers import TCN, StepEncoder

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


def _standardize(steps: int, features: int, mean: float, variance: float):
    inputs = keras.Input((steps, features), name="sequence")
    x = keras.layers.Normalization(mean=mean, variance=variance, name="standardize")(inputs)
    return inputs, x


def _classify(inputs, x, name: str) -> keras.Model:
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def build_tcn(
    cfg: ModelConfig,
    steps: int,
    features: int,
    mean: float = 0.0,
    variance: float = 1.0,
    anytime: bool = False,
) -> keras.Model:
    """Input (steps, features) in [0, 1] -> standardise -> [StepEncoder] -> TCN -> last step
    -> Dense softmax.

    With `anytime` the classifier runs on every step: output (B, T, 10), the prediction after
    each prefix, for training with `CrossEntropy(anytime=...)`; the last step is the usual
    prediction.
    """
    inputs, x = _standardize(steps, features, mean, variance)
    if cfg.step_filters:
        x = StepEncoder(
            cfg.step_filters, activation=cfg.activation, stages=cfg.step_stages, name="step_encoder"
        )(x)
    x = TCN(
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
    return _classify(inputs, x, f"tcn_{steps}x{features}")


def build_rnn(
    cfg: ModelConfig, steps: int, features: int, mean: float = 0.0, variance: float = 1.0
) -> keras.Model:
    """Standardise -> LSTM or GRU (last state) -> Dense softmax."""
    units = cfg.units or rnn_units(cfg.kind, features)
    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cfg.kind]
    inputs, x = _standardize(steps, features, mean, variance)
    x = layer(units, dropout=cfg.dropout or 0.0, name=cfg.kind)(x)
    return _classify(inputs, x, f"{cfg.kind}_{steps}x{features}")


def build_cnn(
    cfg: ModelConfig, steps: int, features: int, mean: float = 0.0, variance: float = 1.0
) -> keras.Model:
    """Two conv-conv-pool stages (32 and 64 channels, batch norm) -> global pool -> Dense."""
    if (steps, features) != (28, 28):
        raise ValueError("the cnn reads 28x28 images (rows order)")
    inputs, x = _standardize(steps, features, mean, variance)
    x = keras.layers.Reshape((28, 28, 1))(x)
    for width in (32, 64):
        for _ in range(2):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation(cfg.activation)(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Dropout(cfg.dropout or 0.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return _classify(inputs, x, "cnn_28x28")


BUILDERS = {"tcn": build_tcn, "lstm": build_rnn, "gru": build_rnn, "cnn": build_cnn}


def build_model(
    cfg: ModelConfig,
    steps: int,
    features: int,
    mean: float = 0.0,
    variance: float = 1.0,
    anytime: bool = False,
) -> keras.Model:
    if anytime:
        return build_tcn(cfg, steps, features, mean, variance, anytime=True)
    return BUILDERS[cfg.kind](cfg, steps, features, mean, variance)


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


def step_predictions(model: keras.Model, sequences, steps=None) -> np.ndarray:
    """(B, T, F) -> (B, T, 10): a TCN classifier's prediction after each step, in one parallel
    pass (causality: step t's output has seen steps 0..t only). `steps` keeps only those
    (0-based) step indices: (B, len(steps), 10)."""
    x = model.get_layer("standardize")(sequences)
    if any(layer.name == "step_encoder" for layer in model.layers):
        x = model.get_layer("step_encoder")(x)
    x = model.get_layer("tcn")(x, all_steps=True)
    if steps is not None:
        x = keras.ops.take(x, np.asarray(steps), axis=1)
    return keras.ops.convert_to_numpy(model.get_layer("classifier")(x))
