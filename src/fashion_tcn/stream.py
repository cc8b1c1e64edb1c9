"""Exact streaming inference for a trained TCN classifier: one time step in, one prediction out.

A causal convolution at step t needs only its last `(kernel_size - 1) * dilation` inputs, so each
convolution keeps exactly those in a ring buffer and a new step costs one kernel application per
layer, instead of a pass over the whole prefix. The arithmetic is NumPy on the trained weights,
so it runs on any Keras backend and without graph overhead per step.

Streamable normalizations: none, weight (folded into the kernel), layer (per step, over
channels), and batch (at inference it is a fixed per-channel affine map from the moving
statistics). Batch norm in *training* mode needs the whole batch of sequences and is not a
streaming operation; nothing here trains.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from scipy.special import erf

from fashion_tcn.layers import TCN, CausalConv1D, ResidualBlock

_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: (
        1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0.0)))
    ),
    "gelu": lambda x: 0.5 * x * (1.0 + erf(x / np.sqrt(2.0))),
    "swish": lambda x: x / (1.0 + np.exp(-x)),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "mish": lambda x: x * np.tanh(np.logaddexp(0.0, x)),
    "linear": lambda x: x,
}


def _activation(name: str):
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation {name!r} has no streaming implementation")
    return _ACTIVATIONS[name]


class _Conv:
    """A causal convolution with a ring buffer of its last `(k - 1) * d` inputs."""

    def __init__(self, layer: CausalConv1D):
        self.kernel = keras.ops.convert_to_numpy(layer.effective_kernel()).astype(np.float64)
        self.bias = keras.ops.convert_to_numpy(layer.bias).astype(np.float64)
        self.dilation = layer.dilation_rate
        self.history = layer.history
        k = self.kernel.shape[0]
        self.backs = np.arange(k - 1, 0, -1) * self.dilation  # steps back for taps 0..k-2
        self.flat_kernel = self.kernel.reshape(-1, self.kernel.shape[2])  # one matmul per step
        self.buffer: np.ndarray | None = None  # (B, history, C_in)
        self.position = 0

    def reset(self, batch: int) -> None:
        self.buffer = np.zeros((batch, self.history, self.kernel.shape[1]))
        self.position = 0

    def step(self, x: np.ndarray) -> np.ndarray:
        """x: (B, C_in) at step t -> (B, C_out); tap j sees x[t - (k - 1 - j) * d]."""
        if not self.history:  # kernel 1: a pointwise layer
            return x @ self.kernel[0] + self.bias
        past = self.buffer[:, (self.position - self.backs) % self.history]  # (B, k - 1, C_in)
        taps = np.concatenate([past, x[:, None]], axis=1).reshape(len(x), -1)
        self.buffer[:, self.position] = x
        self.position = (self.position + 1) % self.history
        return taps @ self.flat_kernel + self.bias

    def flops(self) -> int:
        """Multiply-adds x 2 for one step of one sequence."""
        k, c_in, c_out = self.kernel.shape
        return 2 * k * c_in * c_out


def _norm(layer) -> Callable[[np.ndarray], np.ndarray]:
    """A normalization layer as a per-step function (inference mode)."""
    if layer is None:
        return lambda x: x
    if isinstance(layer, keras.layers.LayerNormalization):
        gamma = keras.ops.convert_to_numpy(layer.gamma).astype(np.float64)
        beta = keras.ops.convert_to_numpy(layer.beta).astype(np.float64)

        def layer_norm(x):
            mean = x.mean(axis=-1, keepdims=True)
            var = x.var(axis=-1, keepdims=True)
            return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta

        return layer_norm
    if isinstance(layer, keras.layers.BatchNormalization):
        mean, var, gamma, beta = (
            keras.ops.convert_to_numpy(w).astype(np.float64)
            for w in (layer.moving_mean, layer.moving_variance, layer.gamma, layer.beta)
        )
        scale = gamma / np.sqrt(var + layer.epsilon)
        return lambda x: (x - mean) * scale + beta
    raise ValueError(f"normalization {type(layer).__name__} cannot stream")


class _Block:
    def __init__(self, block: ResidualBlock):
        self.convs = [_Conv(conv) for conv in block.convs]
        self.norms = [_norm(norm) for norm in block.norms]
        self.act = _activation(block.activation)
        self.shortcut = None
        if block.shortcut is not None:
            kernel, bias = (keras.ops.convert_to_numpy(w) for w in block.shortcut.weights)
            self.shortcut = (kernel[0].astype(np.float64), bias.astype(np.float64))

    def reset(self, batch: int) -> None:
        for conv in self.convs:
            conv.reset(batch)

    def step(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = x
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = self.act(norm(conv.step(h)))
        shortcut = x if self.shortcut is None else x @ self.shortcut[0] + self.shortcut[1]
        return self.act(shortcut + h), h

    def flops(self) -> int:
        extra = 0 if self.shortcut is None else 2 * self.shortcut[0].size
        return sum(conv.flops() for conv in self.convs) + extra


class StreamingClassifier:
    """Feed a TCN classifier (`models.build_model`, `build_classifier`) one step at a time.

    Example:
        >>> stream = StreamingClassifier(model, batch=1)
        >>> for t in range(784):
        ...     probs = stream.step(pixels[:, t])      # (1, 10) after seeing steps 0..t
        >>> stream.reset()

    Outputs equal the full-sequence model's prediction for every prefix (tested to 1e-5).
    """

    def __init__(self, model: keras.Model, batch: int = 1):
        tcn = next((layer for layer in model.layers if isinstance(layer, TCN)), None)
        if tcn is None:
            raise ValueError("streaming needs a TCN model")
        standardize = model.get_layer("standardize")
        self.mean = keras.ops.convert_to_numpy(standardize.mean).astype(np.float64).reshape(-1)
        variance = keras.ops.convert_to_numpy(standardize.variance).astype(np.float64)
        self.std = np.maximum(np.sqrt(variance.reshape(-1)), keras.config.epsilon())  # as Keras
        names = {layer.name for layer in model.layers}
        self.encoder = model.get_layer("step_encoder") if "step_encoder" in names else None
        self.blocks = [_Block(block) for block in tcn.blocks]
        self.skip_connections = tcn.skip_connections
        self.pooling = tcn.pooling
        kernel, bias = (
            keras.ops.convert_to_numpy(w) for w in model.get_layer("classifier").weights
        )
        self.head = (kernel.astype(np.float64), bias.astype(np.float64))
        self.steps_seen = 0
        self.reset(batch)

    def reset(self, batch: int | None = None) -> None:
        """Forget every stream; optionally change how many streams run side by side."""
        self.batch = batch or self.batch
        for block in self.blocks:
            block.reset(self.batch)
        self.steps_seen = 0
        self.feature_sum = 0.0  # running sum of the TCN outputs, for pooling="mean"

    def step(self, x: np.ndarray) -> np.ndarray:
        """x: (B, features) for the next step -> (B, 10) class probabilities so far."""
        x = (np.asarray(x, np.float64).reshape(self.batch, -1) - self.mean) / self.std
        if self.encoder is not None:  # per step by construction: run it on this step alone
            x = keras.ops.convert_to_numpy(self.encoder(x[:, None].astype("float32")))[:, 0]
            x = x.astype(np.float64)
        skips = 0.0
        for block in self.blocks:
            x, residual = block.step(x)
            skips = skips + residual
        features = skips if self.skip_connections else x
        self.steps_seen += 1
        if self.pooling == "mean":
            self.feature_sum = self.feature_sum + features
            features = self.feature_sum / self.steps_seen
        logits = features @ self.head[0] + self.head[1]
        return _softmax(logits)

    def run(self, sequences: np.ndarray) -> np.ndarray:
        """(B, T, features) chunk -> (B, T, 10) probabilities after each of its steps."""
        return np.stack([self.step(sequences[:, t]) for t in range(sequences.shape[1])], axis=1)

    def flops_per_step(self) -> int:
        """Per sequence: convolutions, shortcuts and the classifier for one new step."""
        encoder = 0
        if self.encoder is not None:  # (1, k) convolutions along the step, two per stage
            features = self.encoder.input.shape[-1]  # positions in stage s: features // 2**s
            encoder = sum(
                2 * (features // 2 ** (i // 2)) * np.prod(conv.kernel.shape)
                for i, conv in enumerate(self.encoder.convs)
            )
        return sum(block.flops() for block in self.blocks) + int(encoder) + 2 * self.head[0].size

    def state_size(self) -> int:
        """Numbers one stream keeps between steps: every convolution's ring buffer."""
        return sum(conv.history * conv.kernel.shape[1] for b in self.blocks for conv in b.convs)


def step_cost(model: keras.Model) -> dict[str, int] | None:
    """What one new step costs a stream of one sequence: FLOPs (2 per multiply-add, layers and
    classifier) and the numbers kept between steps. A TCN keeps ring buffers
    (`StreamingClassifier`); an LSTM or GRU keeps its state (2 x units or units) and runs its
    gates' kernels once per step. None for a model that reads the whole image (the CNN)."""
    names = {layer.name for layer in model.layers}
    if "tcn" in names:
        stream = StreamingClassifier(model)
        return {"flops": stream.flops_per_step(), "state": stream.state_size()}
    kind = next((name for name in ("lstm", "gru") if name in names), None)
    if kind is None:
        return None
    rnn = model.get_layer(kind)
    kernel, recurrent = (int(np.prod(w.shape)) for w in rnn.cell.weights[:2])
    head = int(np.prod(model.get_layer("classifier").weights[0].shape))
    return {
        "flops": 2 * (kernel + recurrent + head),
        "state": rnn.cell.units * (2 if kind == "lstm" else 1),
    }


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)
