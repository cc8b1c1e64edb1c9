"""A trained TCN classifier's stream step in NumPy, its convolutions' pasts in ring buffers.

The Keras step (`stream.StepModel`) is functional: every call takes every convolution's cache
and returns a shifted copy, so a step moves the whole state (300 KB per stream for the default
pixel TCN) and pays a compiled graph's dispatch, milliseconds on TensorFlow. Here the weights are
read out once, each convolution with its normalisation folded in as far as it is linear, and
every array a step needs is allocated once per batch size: a step stores one row per
convolution, gathers its taps, and runs one matrix product and a few elementwise operations in
place. At the small shapes of one step (256 streams x 25 channels is 25 KB) the count of NumPy
calls costs as much as the arithmetic, so there are few. The arithmetic is the layers' own in
float32 up to rounding (tests/test_stream.py holds it to the full pass); models in a mixed
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


def _activate(name: str, x: np.ndarray, out: np.ndarray, zeros: np.ndarray) -> None:
    """`out[...] = activation(x)`. ReLU as a maximum against an array of zeros shaped like x:
    NumPy runs that about 3x faster than against the scalar 0."""
    if name == "relu":
        np.maximum(x, zeros, out=out)
    else:
        out[...] = ACTIVATIONS[name](x)


class _Buffers:
    """One convolution's arrays for a batch of streams, allocated once, channels-major (channels,
    batch) like every step's activations, so each step of the past is one contiguous slab: the
    last `span` steps (step t at row `t mod span`), the taps gathered above a row of ones, and
    the output. The constants are full (filters, batch) arrays: NumPy's elementwise loops run
    about 3x faster on equal shapes than broadcasting a column."""

    def __init__(self, conv: _Conv, batch: int):
        self.ring = np.zeros((conv.span, conv.channels, batch), "float32")
        self.work = np.ones((conv.taps * conv.channels + 1, batch), "float32")
        self.taps = self.work[:-1].reshape(conv.taps, conv.channels, batch)  # a view
        self.out = np.empty((conv.filters, batch), "float32")
        self.zeros = np.zeros_like(self.out)
        if conv.layer_norm is not None:
            self.squares, self.spread = np.empty_like(self.out), np.empty((1, batch), "float32")
            self.gamma, self.beta = (np.tile(v[:, None], (1, batch)) for v in conv.layer_norm[1:])


class _Conv:
    """A causal dilated convolution and the normalisation after it, as one matrix product of the
    taps (and a 1, the bias being the matrix's last row). Folded into the matrix once: weight
    norm, batch norm (affine at inference) and layer norm's centring (linear); what is left of
    layer norm is each step's division by its spread, then its scale and shift."""

    def __init__(self, layer, norm):
        kernel = _array(layer.effective_kernel())
        self.taps, self.channels, self.filters = kernel.shape
        matrix, bias = kernel.reshape(-1, self.filters), _array(layer.bias)
        self.layer_norm, self.ones = None, np.ones((1, self.filters), "float32")
        if isinstance(norm, keras.layers.BatchNormalization):
            scale = _array(norm.gamma) / np.sqrt(_array(norm.moving_variance) + norm.epsilon)
            matrix = matrix * scale
            bias = (bias - _array(norm.moving_mean)) * scale + _array(norm.beta)
        elif norm is not None:  # layer norm, over channels
            centre = np.eye(self.filters, dtype="float32") - np.float32(1 / self.filters)
            matrix, bias = matrix @ centre, bias @ centre
            # x / sqrt(mean(x^2) + eps) as x * sqrt(n) / sqrt(sum(x^2) + n eps): sqrt(n) joins gamma
            n = self.filters
            gamma = _array(norm.gamma) * np.float32(np.sqrt(n))
            self.layer_norm = (np.float32(n * norm.epsilon), gamma, _array(norm.beta))
        self.matrix = np.ascontiguousarray(np.vstack([matrix, bias[None]]).T, "float32")
        self.dilation, self.span = layer.dilation_rate, layer.history + 1

    def __call__(self, x: np.ndarray, buffers: _Buffers, t: int) -> np.ndarray:
        """x (channels, B) is step t: store it, then convolve the last `span` steps' taps."""
        at, ring, taps, dilation = t % self.span, buffers.ring, buffers.taps, self.dilation
        ring[at] = x
        older = ring[at + 1 :: dilation]  # the taps before the ring wraps, oldest first
        taps[: len(older)] = older
        taps[len(older) :] = ring[at + 1 + len(older) * dilation - self.span : at + 1 : dilation]
        out = np.matmul(self.matrix, buffers.work, out=buffers.out)
        if self.layer_norm is not None:
            np.square(out, out=buffers.squares)
            spread = np.matmul(self.ones, buffers.squares, out=buffers.spread)  # (1, B) sums
            spread += self.layer_norm[0]
            np.sqrt(spread, out=spread)
            out /= spread  # a row over channels-major rows: NumPy's fast broadcast
            out *= buffers.gamma
            out += buffers.beta
        return out


class _Block:
    def __init__(self, block):
        self.convs = [_Conv(c, n) for c, n in zip(block.convs, block.norms, strict=True)]
        self.activation = block.activation
        self.shortcut = None
        if block.shortcut is not None:
            kernel, bias = _array(block.shortcut.kernel)[0], _array(block.shortcut.bias)
            self.shortcut = (kernel.T.copy(), bias[:, None])

    def __call__(self, x, buffers, t):
        """-> (block output, residual branch), as `ResidualBlock` (dropout is off at inference).
        The residual branch is a buffer of this block's, overwritten by the next step."""
        y = x
        for conv, conv_buffers in zip(self.convs, buffers, strict=True):
            y = conv(y, conv_buffers, t)
            _activate(self.activation, y, y, conv_buffers.zeros)
        shortcut = x if self.shortcut is None else self.shortcut[0] @ x + self.shortcut[1]
        out = shortcut + y
        _activate(self.activation, out, out, buffers[-1].zeros)
        return out, y


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
        """Every stream back to step 0: the buffers cleared in place, or new ones for a new
        batch size (fresh pages would be faulted in during the first steps)."""
        self.t = 0
        if batch != getattr(self, "batch", None):
            self.batch = batch
            self.buffers = [[_Buffers(c, batch) for c in b.convs] for b in self.blocks]
            self.total = np.zeros((self.head[0].shape[0], batch), "float32")  # mean pooling
            return
        for block in self.buffers:
            for conv in block:
                conv.ring.fill(0.0)
        self.total.fill(0.0)

    def __copy__(self) -> RingStep:
        """Another set of streams on the same weights, with buffers of its own."""
        other = object.__new__(RingStep)
        other.__dict__.update(self.__dict__)
        del other.batch
        other.reset(self.batch)
        return other

    def step(self, x: np.ndarray) -> np.ndarray:
        x = (np.asarray(x, "float32").reshape(self.batch, -1) - self.mean) / self.scale
        if self.encoder is not None:
            x = self.encoder(x)
        x = np.ascontiguousarray(x.T)  # channels-major from here to the head
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
        logits = x.T @ self.head[0] + self.head[1]
        exp = np.exp(logits - logits.max(-1, keepdims=True))
        return exp / exp.sum(-1, keepdims=True)
