"""A trained TCN classifier's stream step in NumPy, its convolutions' pasts in ring buffers.

The Keras step (`stream.StepModel`) is functional: every call takes every convolution's cache
and returns a shifted copy, so a step moves the whole state (300 KB per stream for the default
pixel TCN) and pays a compiled graph's dispatch, milliseconds on TensorFlow. Here the weights are
read out once; each convolution keeps its last `history + 1` inputs in a buffer written twice
(at `t mod n` and `t mod n + n`), so its `kernel_size` taps are always one strided view and a
step writes one row per convolution and copies nothing else. The arithmetic is the layers' own
in float32, step by step (tests/test_stream.py holds it to the full pass); models in a mixed
precision stream through Keras, whose arithmetic they were trained in.
"""

from __future__ import annotations

import keras
import numpy as np
from scipy.special import erf, expit

ACTIVATIONS = {  # Keras 3's definitions and defaults (tested against keras.activations)
    "relu": lambda x: np.maximum(x, 0.0),
    "gelu": lambda x: 0.5 * x * (1.0 + erf(x / np.sqrt(2.0))),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: (
        1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0.0)))
    ),
    "tanh": np.tanh,
    "swish": lambda x: x * expit(x),
    "silu": lambda x: x * expit(x),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "mish": lambda x: x * np.tanh(np.logaddexp(0.0, x)),
}


def _array(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable), "float32")


def supports(model: keras.Model) -> bool:
    """Whether this step reproduces `model`'s arithmetic: float32 layers, known activations."""
    return all(layer.compute_dtype == "float32" for layer in model.layers) and all(
        getattr(layer, "activation", "relu") in ACTIVATIONS
        for layer in model.layers
        if layer.name in ("tcn", "step_encoder")
    )


class _Conv:
    """A causal dilated convolution's weights, as one (kernel_size x channels in, out) matrix."""

    def __init__(self, layer):
        kernel = _array(layer.effective_kernel())  # weight norm folded in once
        self.taps, self.channels, filters = kernel.shape
        self.matrix, self.bias = kernel.reshape(-1, filters), _array(layer.bias)
        self.dilation, self.span = layer.dilation_rate, layer.history + 1

    def buffer(self, batch: int) -> np.ndarray:
        """Time-major, so each tap of a batch of streams is one contiguous slab."""
        return np.zeros((2 * self.span, batch, self.channels), "float32")

    def __call__(self, x: np.ndarray, buffer: np.ndarray, t: int) -> np.ndarray:
        """x (B, channels) is step t: store it, then read the last `span` steps' taps."""
        at = t % self.span
        buffer[at] = buffer[at + self.span] = x
        taps = buffer[at + 1 : at + 1 + self.span : self.dilation]  # (k, B, C), oldest first
        return taps.transpose(1, 0, 2).reshape(len(x), -1) @ self.matrix + self.bias


def _norm(layer):
    """Inference-time normalisation as a function of one step (B, channels)."""
    if layer is None:
        return lambda x: x
    if isinstance(layer, keras.layers.BatchNormalization):
        scale = _array(layer.gamma) / np.sqrt(_array(layer.moving_variance) + layer.epsilon)
        shift = _array(layer.beta) - _array(layer.moving_mean) * scale
        return lambda x: x * scale + shift
    gamma, beta, epsilon = _array(layer.gamma), _array(layer.beta), layer.epsilon
    average = np.full((len(gamma), 1), 1 / len(gamma), "float32")  # a mean as a matrix product:
    # NumPy's own mean costs several times more on (B, 25) arrays

    def layer_norm(x):
        centred = x - x @ average
        return centred / np.sqrt(np.square(centred) @ average + epsilon) * gamma + beta

    return layer_norm


class _Block:
    def __init__(self, block):
        self.convs = [_Conv(conv) for conv in block.convs]
        self.norms = [_norm(norm) for norm in block.norms]
        self.act = ACTIVATIONS[block.activation]
        self.shortcut = None
        if block.shortcut is not None:
            self.shortcut = (_array(block.shortcut.kernel)[0], _array(block.shortcut.bias))

    def __call__(self, x, buffers, t):
        """-> (block output, residual branch), as `ResidualBlock` (dropout is off at inference)."""
        y = x
        for conv, norm, buffer in zip(self.convs, self.norms, buffers, strict=True):
            y = self.act(norm(conv(y, buffer, t)))
        shortcut = x if self.shortcut is None else x @ self.shortcut[0] + self.shortcut[1]
        return self.act(shortcut + y), y


class _Encoder:
    """`encoder.StepEncoder` on one step: (1, k) "same" convolutions along the step's features
    as one matrix product over a sliding window, and max-pools by 2."""

    def __init__(self, encoder):
        self.act = ACTIVATIONS[encoder.activation]
        self.stages = [
            [(_array(c.kernel)[0], _array(c.bias)) for c in encoder.convs[2 * s : 2 * s + 2]]
            for s in range(encoder.stages)
        ]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = x[..., None]  # (B, features, 1)
        for stage in self.stages:
            for kernel, bias in stage:  # kernel (k, in, out)
                k = len(kernel)
                padded = np.pad(x, ((0, 0), ((k - 1) // 2, k // 2), (0, 0)))
                windows = np.lib.stride_tricks.sliding_window_view(padded, k, axis=1)
                windows = windows.transpose(0, 1, 3, 2).reshape(*x.shape[:2], -1)
                x = self.act(windows @ kernel.reshape(-1, kernel.shape[-1]) + bias)
            pairs = x[:, : x.shape[1] // 2 * 2].reshape(len(x), -1, 2, x.shape[-1])
            x = pairs.max(axis=2)
        return x.reshape(len(x), -1)


class RingStep:
    """Streams of a TCN classifier stepped in NumPy: `step(x)` (B, features) -> (B, 10)."""

    def __init__(self, classifier: keras.Model, tcn, encoder, batch: int = 1):
        standardize = classifier.get_layer("standardize")
        self.mean = _array(standardize.mean).reshape(-1)
        sd = np.sqrt(_array(standardize.variance).reshape(-1))
        self.scale = np.maximum(sd, keras.config.epsilon())
        self.encoder = None if encoder is None else _Encoder(encoder)
        self.blocks = [_Block(block) for block in tcn.blocks]
        self.skips, self.mean_pool = tcn.skip_connections, tcn.pooling == "mean"
        head = classifier.get_layer("classifier")
        self.head = (_array(head.kernel), _array(head.bias))
        self.reset(batch)

    def reset(self, batch: int) -> None:
        """New buffers (a copy of this object made before keeps its own: weights are shared)."""
        self.batch, self.t = batch, 0
        self.buffers = [[c.buffer(batch) for c in b.convs] for b in self.blocks]
        self.total = np.zeros((batch, self.head[0].shape[0]), "float32")  # mean pooling

    def step(self, x: np.ndarray) -> np.ndarray:
        x = (np.asarray(x, "float32").reshape(self.batch, -1) - self.mean) / self.scale
        if self.encoder is not None:
            x = self.encoder(x)
        residuals = []
        for block, buffers in zip(self.blocks, self.buffers, strict=True):
            x, residual = block(x, buffers, self.t)
            residuals.append(residual)
        if self.skips:
            x = np.sum(residuals, axis=0)
        self.t += 1
        if self.mean_pool:
            self.total += x
            x = self.total / np.float32(self.t)
        logits = x @ self.head[0] + self.head[1]
        exp = np.exp(logits - logits.max(-1, keepdims=True))
        return exp / exp.sum(-1, keepdims=True)
