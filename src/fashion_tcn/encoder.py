"""The step encoder: convolutions across each step's own features (a row's 28 pixels), in front
of a row-wise TCN. Nothing here mixes steps, so the model stays causal and streams.

Registered under the same name as when it lived in layers.py, so saved models load.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fashion_tcn")
class StepEncoder(keras.layers.Layer):
    """Convolve along each step's own features (a row's 28 pixels), the same way at every step.

    A row-wise TCN otherwise meets a row as 28 unrelated numbers, so a shirt shifted one pixel
    sideways is a new input to its first convolution. Stages of two (1, k) convolutions and a
    max-pool by 2 across the row give it local, shift-tolerant features first; a second stage
    widens what one feature sees along the row. Nothing here mixes steps, so the model stays
    causal and streams step by step.

    Args:
        filters: channels of the first stage's convolutions; each later stage doubles them.
        kernel_size: taps across the row.
        activation: any Keras activation name.
        stages: conv-conv-pool stages; the row shrinks by 2 in each.

    Call arguments:
        inputs: (batch, steps, features).

    Example:
        >>> StepEncoder(8)(keras.ops.ones((2, 28, 28))).shape
        (2, 28, 112)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        activation: str = "relu",
        stages: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.activation = activation
        self.stages = stages

    def build(self, input_shape):
        shape = (*input_shape, 1)  # (B, T, F, 1): an image whose kernels span one step only
        self.convs = []  # stage by stage, two each (the name keeps older .keras files loading)
        self.pool = keras.layers.MaxPooling2D((1, 2), name="pool")
        for stage in range(self.stages):
            for i in (1, 2):
                conv = keras.layers.Conv2D(
                    self.filters * 2**stage,
                    (1, self.kernel_size),
                    padding="same",
                    activation=self.activation,
                    name=f"conv{i}" if stage == 0 else f"stage{stage + 1}_conv{i}",
                )
                conv.build(shape)
                shape = conv.compute_output_shape(shape)
                self.convs.append(conv)
            shape = self.pool.compute_output_shape(shape)

    def call(self, inputs):
        x = ops.expand_dims(inputs, -1)  # (B, T, F, 1)
        for stage in range(self.stages):
            for conv in self.convs[2 * stage : 2 * stage + 2]:
                x = conv(x)  # (B, T, F / 2**stage, filters * 2**stage)
            x = self.pool(x)
        return ops.reshape(x, (-1, ops.shape(inputs)[1], x.shape[2] * x.shape[3]))  # T may be None

    def compute_output_shape(self, input_shape):
        width = input_shape[-1] // 2**self.stages
        return (*input_shape[:-1], width * self.filters * 2 ** (self.stages - 1))

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "activation": self.activation,
            "stages": self.stages,
        }
