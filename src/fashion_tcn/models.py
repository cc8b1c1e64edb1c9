"""Classifiers built from a `ModelConfig`: sequence in, 10 class probabilities out."""

from __future__ import annotations

import keras

from fashion_tcn.config import ConfigError, ModelConfig
from fashion_tcn.layers import TCN, covering_dilations

NUM_CLASSES = 10


def check_receptive_field(cfg: ModelConfig, steps: int) -> int:
    """The TCN's receptive field; an error if it cannot see the whole sequence (unless allowed)."""
    tcn = TCN(cfg.filters, cfg.kernel_size, cfg.dilations, cfg.stacks)
    field = tcn.receptive_field
    if field < steps and not cfg.allow_short_receptive_field:
        cover = covering_dilations(steps, cfg.kernel_size, cfg.stacks)
        raise ConfigError(
            f"receptive field {field} is shorter than the sequence ({steps} steps): the last step "
            f"cannot see the first; use dilations {','.join(map(str, cover))} (kernel "
            f"{cfg.kernel_size}, {cfg.stacks} stack(s)) or pass --allow-short-receptive-field"
        )
    return field


def build_tcn(
    cfg: ModelConfig, steps: int, features: int, mean: float = 0.0, variance: float = 1.0
) -> keras.Model:
    """Input (steps, features) in [0, 1] -> standardise -> TCN -> last step -> Dense softmax."""
    check_receptive_field(cfg, steps)
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
