"""Classifiers built from a resolved `ModelConfig`: sequence in, 10 class probabilities out."""

from __future__ import annotations

import keras

from fashion_tcn.config import ModelConfig
from fashion_tcn.layers import TCN

NUM_CLASSES = 10


def build_tcn(
    cfg: ModelConfig, steps: int, features: int, mean: float = 0.0, variance: float = 1.0
) -> keras.Model:
    """Input (steps, features) in [0, 1] -> standardise -> TCN -> last step -> Dense softmax."""
    inputs = keras.Input((steps, features), name="sequence")
    x = keras.layers.Normalization(mean=mean, variance=variance, name="standardize")(inputs)
    x = TCN(
        cfg.filters,
        cfg.kernel_size,
        cfg.dilations,
        cfg.stacks,
        cfg.dropout,
        cfg.activation,
        cfg.norm,
        cfg.skip_connections,
        name="tcn",
    )(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=f"tcn_{steps}x{features}")


BUILDERS = {"tcn": build_tcn}


def build_model(
    cfg: ModelConfig, steps: int, features: int, mean: float = 0.0, variance: float = 1.0
) -> keras.Model:
    return BUILDERS[cfg.kind](cfg, steps, features, mean, variance)
