"""The TCN: causal dilated convolutions in residual blocks (Bai, Kolter & Koltun, 2018).

Written with `keras.ops` and Keras layers only, so it runs on any Keras 3 backend, and registered
for `.keras` saving. Every layer keeps the sequence length (B, T, C) -> (B, T, C'): the output at
step t depends on inputs at steps <= t only.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from fashion_tcn.config import NORMS, POOLINGS, receptive_field

# Long sequences on TensorFlow: each dilation-d convolution runs undilated on its d interleaved
# subsequences folded into the batch (`CausalConv1D._folded`). On the 2-core CPUs measured that
# trained the 784-step stacks faster than TensorFlow's dilated convolution (1.1-1.4x with 25
# filters, 1.05-1.4x with 64) and the 28-step row stack slower (0.88x); JAX's own was faster than
# the fold on both (benchmarks/conv_speed.py). None: never.
FOLD_FROM_STEPS = 256 if keras.backend.backend() == "tensorflow" else None


def _fold(steps: int | None) -> bool:
    return FOLD_FROM_STEPS is not None and steps is not None and steps >= FOLD_FROM_STEPS


@keras.saving.register_keras_serializable(package="fashion_tcn")
class CausalConv1D(keras.layers.Layer):
    """1-D convolution that pads only the past, with optional weight normalization.

    Args:
        filters: output channels.
        kernel_size: taps per convolution.
        dilation_rate: spacing between taps; the layer looks `(kernel_size - 1) * dilation_rate`
            steps back.
        weight_norm: reparametrise the kernel as `g * v / ||v||` per output channel
            (Salimans & Kingma, 2016), the normalization Bai et al. use.

    Call arguments:
        inputs: (batch, steps, channels).
        cache: optional (batch, history, channels), the inputs before these; then the call
            returns `(outputs, new_cache)`, so a stream feeds steps one or a chunk at a time.

    Example:
        >>> conv = CausalConv1D(8, 3, dilation_rate=2)
        >>> conv(keras.ops.ones((1, 10, 4))).shape
        (1, 10, 8)
        >>> y, cache = conv(keras.ops.ones((1, 1, 4)), cache=keras.ops.zeros((1, 4, 4)))
        >>> y.shape, cache.shape
        ((1, 1, 8), (1, 4, 4))
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        dilation_rate: int = 1,
        weight_norm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.dilation_rate = dilation_rate
        self.weight_norm = weight_norm

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size, channels, self.filters),
            initializer="glorot_uniform",
        )
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
        if self.weight_norm:
            # g = 1: glorot kernels of hidden layers have a per-channel norm near 1; an input
            # layer's is smaller (about 0.3 for one pixel channel), so it starts stronger.
            # Starting g at the kernel's norm scored 0.56 points lower in validation on rows.
            self.gain = self.add_weight(name="gain", shape=(self.filters,), initializer="ones")

    @property
    def history(self) -> int:
        """Past steps one output depends on, besides the current one."""
        return (self.kernel_size - 1) * self.dilation_rate

    def effective_kernel(self):
        if not self.weight_norm:
            return self.kernel
        norm = ops.sqrt(ops.sum(ops.square(self.kernel), axis=(0, 1), keepdims=True) + 1e-12)
        return self.gain * self.kernel / norm

    def call(self, inputs, cache=None, dilation_rate=None):
        """Without `cache` the past before step 0 is zeros. With `cache` (B, history, C_in), the
        inputs continue the sequence whose last `history` steps it holds, and the call returns
        `(outputs, new_cache)`: a stream feeds steps in one or a chunk at a time, with the same
        weights and the same arithmetic as the full pass. `dilation_rate` overrides the layer's
        for one call: on a sequence already thinned to every d-th step, dilation d becomes 1
        (`TCN`'s last-step path)."""
        dilation = self.dilation_rate if dilation_rate is None else dilation_rate
        history = (self.kernel_size - 1) * dilation
        if cache is None and dilation > 1 and _fold(inputs.shape[1]):
            return self._folded(inputs, dilation) + self.bias
        if cache is None:
            padded = ops.pad(inputs, ((0, 0), (history, 0), (0, 0)))  # past only
        else:
            padded = ops.concatenate([ops.cast(cache, inputs.dtype), inputs], axis=1)
        taps = padded
        if inputs.shape[1] == 1 and dilation > 1:  # one step: its k taps, undilated
            taps, dilation = padded[:, ::dilation], 1
        outputs = ops.conv(taps, self.effective_kernel(), padding="valid", dilation_rate=dilation)
        outputs = outputs + self.bias
        if cache is None:
            return outputs
        return outputs, padded[:, -history:]

    def _folded(self, inputs, dilation: int):
        """The full pass of a dilation-d convolution as an undilated one: step t reads steps
        t, t - d, ..., all of its own residue mod d, so the padded sequence is cut into its d
        interleaved subsequences, (B, T, C) -> (B * d, T / d, C), convolved with dilation 1
        and woven back. Zeros in front make T a multiple of d; their outputs are dropped."""
        d, steps, channels = dilation, inputs.shape[1], inputs.shape[2]
        extra = -steps % d
        padded = ops.pad(inputs, ((0, 0), ((self.kernel_size - 1) * d + extra, 0), (0, 0)))
        rows = padded.shape[1] // d
        folded = ops.transpose(ops.reshape(padded, (-1, rows, d, channels)), (0, 2, 1, 3))
        outputs = ops.conv(ops.reshape(folded, (-1, rows, channels)), self.effective_kernel())
        out = rows - self.kernel_size + 1
        woven = ops.transpose(ops.reshape(outputs, (-1, d, out, self.filters)), (0, 2, 1, 3))
        return ops.reshape(woven, (-1, out * d, self.filters))[:, extra:]

    def cache_shape(self) -> tuple[int, int]:
        """One stream's cache, (history, channels in); the layer must be built."""
        return (self.history, self.kernel.shape[1])

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "dilation_rate": self.dilation_rate,
            "weight_norm": self.weight_norm,
        }


@keras.saving.register_keras_serializable(package="fashion_tcn")
class ResidualBlock(keras.layers.Layer):
    """Two causal dilated convolutions, each followed by norm, activation and spatial dropout,
    added to a (1x1-projected when widths differ) shortcut.

    Args:
        filters: output channels of both convolutions.
        kernel_size: taps per convolution.
        dilation_rate: dilation of both convolutions.
        dropout: spatial dropout rate (whole channels are dropped, as in Bai et al.).
        activation: any Keras activation name.
        norm: "none", "batch", "layer" (over channels, per step, so it stays causal) or "weight".

    Call arguments:
        inputs: (batch, steps, channels).
        training: dropout and batch norm switch.
        cache: the two convolutions' caches, to continue a stream (see `CausalConv1D`).

    Returns:
        `(output, residual)`: the block output `activation(shortcut + residual)` and the residual
        branch alone, which TCN sums over blocks when skip connections are on; with `cache`,
        `(output, residual, new_cache)`.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        dilation_rate: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm: str = "none",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose from {', '.join(NORMS)}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.dilation_rate = dilation_rate
        self.dropout = dropout
        self.activation = activation
        self.norm = norm

    def _norm_layer(self, name: str):
        if self.norm == "batch":
            return keras.layers.BatchNormalization(name=name)
        if self.norm == "layer":
            return keras.layers.LayerNormalization(name=name)
        return None

    def build(self, input_shape):
        self.convs, self.norms, self.drops = [], [], []
        shape = tuple(input_shape)
        for i in (1, 2):
            conv = CausalConv1D(
                self.filters,
                self.kernel_size,
                self.dilation_rate,
                weight_norm=self.norm == "weight",
                name=f"conv{i}",
            )
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm = self._norm_layer(f"norm{i}")
            if norm is not None:
                norm.build(shape)
            drop = keras.layers.SpatialDropout1D(self.dropout, name=f"dropout{i}")
            self.convs.append(conv)
            self.norms.append(norm)
            self.drops.append(drop)
        self.act = keras.layers.Activation(self.activation, name="act")
        self.shortcut = None
        if input_shape[-1] != self.filters:
            self.shortcut = keras.layers.Conv1D(self.filters, 1, name="shortcut")
            self.shortcut.build(input_shape)

    def call(self, inputs, training=None, cache=None, dilation_rate=None):
        """With `cache` (one per convolution, `CausalConv1D`) also returns the new caches."""
        x, new_cache = inputs, []
        for i, (conv, norm, drop) in enumerate(
            zip(self.convs, self.norms, self.drops, strict=True)
        ):
            if cache is None:
                x = conv(x, dilation_rate=dilation_rate)
            else:
                x, conv_cache = conv(x, cache=cache[i])
                new_cache.append(conv_cache)
            if norm is not None:
                x = norm(x, training=training)
            x = drop(self.act(x), training=training)
        shortcut = inputs if self.shortcut is None else self.shortcut(inputs)
        if cache is None:
            return self.act(shortcut + x), x
        return self.act(shortcut + x), x, new_cache

    def compute_output_shape(self, input_shape):
        shape = (*input_shape[:-1], self.filters)
        return shape, shape

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "dilation_rate": self.dilation_rate,
            "dropout": self.dropout,
            "activation": self.activation,
            "norm": self.norm,
        }


@keras.saving.register_keras_serializable(package="fashion_tcn")
class TCN(keras.layers.Layer):
    """Temporal Convolutional Network: residual blocks with dilations growing 1, 2, 4, ...

    Args:
        filters: channels of every block.
        kernel_size: taps per convolution.
        dilations: one block per entry, used as given (never rewritten).
        stacks: how many times the dilation list is repeated.
        dropout: spatial dropout rate inside each block.
        activation: any Keras activation name.
        norm: "none", "batch", "layer" or "weight" normalization inside each block.
        skip_connections: output the sum of every block's residual branch (WaveNet) instead of
            the last block's output.
        pooling: "last" reads the last step out; "mean" reads the mean over all steps, like a
            CNN's global average pool. With `all_steps`, step t then gives the mean over steps
            0..t, so the layer stays causal.
        return_sequences: return every step (B, T, filters) instead of the last (B, filters).

    Call arguments:
        inputs: (batch, steps, channels).
        training: dropout and batch norm switch.
        all_steps: return every step even when `return_sequences` is off: causality makes step
            t's output the prediction after seeing steps 0..t (anytime prediction).
        cache: the state of streams the inputs continue (`cache_shapes`, zeros to start one);
            then returns `(every step's output, new cache)` and costs only the new steps.

    Example:
        >>> tcn = TCN(16, kernel_size=3, dilations=(1, 2, 4))
        >>> tcn.receptive_field
        29
        >>> tcn(keras.ops.ones((2, 28, 28))).shape
        (2, 16)

    Reference:
        Bai, Kolter, Koltun. An Empirical Evaluation of Generic Convolutional and Recurrent
        Networks for Sequence Modeling. arXiv:1803.01271, 2018.
    """

    def __init__(
        self,
        filters: int = 64,
        kernel_size: int = 3,
        dilations: list[int] | tuple[int, ...] = (1, 2, 4, 8),
        stacks: int = 1,
        dropout: float = 0.0,
        activation: str = "relu",
        norm: str = "none",
        skip_connections: bool = False,
        return_sequences: bool = False,
        pooling: str = "last",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.dilations = [int(d) for d in dilations]
        self.stacks = stacks
        self.dropout = dropout
        self.activation = activation
        self.norm = norm
        self.skip_connections = skip_connections
        self.return_sequences = return_sequences
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
        self.pooling = pooling

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.kernel_size, self.dilations, self.stacks)

    def build(self, input_shape):
        self.blocks = []
        shape = tuple(input_shape)
        for s in range(self.stacks):
            for d in self.dilations:
                block = ResidualBlock(
                    self.filters,
                    self.kernel_size,
                    d,
                    self.dropout,
                    self.activation,
                    self.norm,
                    name=f"block_s{s}_d{d}",
                )
                block.build(shape)
                shape = block.compute_output_shape(shape)[0]
                self.blocks.append(block)

    def call(self, inputs, training=None, all_steps=False, cache=None):
        if cache is not None:
            return self._stream(inputs, cache, training)
        if self._last_step_only(inputs, all_steps):
            return self._blocks(inputs, training, last_only=True)[0]
        x, _ = self._blocks(inputs, training)
        if self.return_sequences:
            return x
        if self.pooling == "mean":
            # sums and counts in float32: bfloat16 holds integers exactly only up to 256
            x32 = ops.cast(x, "float32")
            if not all_steps:
                return ops.cast(ops.mean(x32, axis=1), x.dtype)
            steps = ops.arange(1, ops.shape(x)[1] + 1, dtype="float32")
            means = ops.cumsum(x32, axis=1) / steps[None, :, None]  # mean of steps 0..t at t
            return ops.cast(means, x.dtype)
        return x if all_steps else x[:, -1, :]

    def cache_shapes(self) -> list[tuple[int, ...]]:
        """One stream's state, as `cache` takes it: every convolution's (history, channels),
        block by block, then for mean pooling the running sum (filters,) and count (1,), both
        kept in float32 whatever the layer's precision."""
        shapes = [conv.cache_shape() for block in self.blocks for conv in block.convs]
        return shapes + ([(self.filters,), (1,)] if self.pooling == "mean" else [])

    def _stream(self, inputs, cache, training=None):
        """(B, T, C) steps that continue the streams held in `cache` (`cache_shapes`; zeros
        start a stream) -> (outputs after each step as with `all_steps`, new cache)."""
        x, new_cache = self._blocks(inputs, training, cache=cache)
        if self.return_sequences or self.pooling != "mean":
            return x, new_cache
        total, count = cache[-2:]  # (B, filters), (B, 1): the steps before this chunk
        steps = ops.arange(1, ops.shape(x)[1] + 1, dtype="float32")[None, :, None]
        total = ops.cast(total, "float32")[:, None] + ops.cumsum(ops.cast(x, "float32"), axis=1)
        count = ops.cast(count, "float32")[:, None] + steps
        means = ops.cast(total / count, x.dtype)
        return means, [*new_cache, total[:, -1], count[:, -1]]

    def _last_step_only(self, inputs, all_steps: bool) -> bool:
        """Whether only the last step's output is wanted and can be computed on its own.

        Batch norm in training normalises over every step, so leaving steps out would change
        its statistics: it always takes the full pass.
        """
        wanted = not (all_steps or self.return_sequences or self.pooling == "mean")
        return wanted and self.norm != "batch" and inputs.shape[1] is not None

    def _blocks(self, inputs, training=None, cache=None, last_only: bool = False):
        """The blocks and the sum of their skip outputs: the one loop of every path, so a change
        to a block is made once. Returns (outputs, new cache).

        - the full pass: (B, T, filters) for every step;
        - `cache` (`_stream`): each block continues its streams from its part of the cache and
          returns its new part;
        - `last_only`: the last step's output, (B, filters), with a fraction of the work. A
          block of dilation d reads steps t, t - d, t - 2d, ...; when every later block's
          dilation is a multiple of g, the steps the last one needs are T - 1, T - 1 - g, ...,
          so the sequence can be thinned to those before the block, which then runs with
          dilation d / g. With dilations 1, 2, 4, ... the blocks of the last stack see T, T/2,
          T/4, ... steps: the 8-block pixel TCN does about a quarter of the full pass's work.
          Causal zero padding thins to itself, so the result equals the full pass's last step
          (tested); earlier stacks feed every step to the first block of the next and stay
          whole.
        """
        last_stack = len(self.blocks) - len(self.dilations)
        x, stride, skips, new_cache = inputs, 1, [], []
        for i, block in enumerate(self.blocks):
            options = {}
            if cache is not None:
                options["cache"] = cache[2 * i : 2 * i + 2]
            if last_only and i >= last_stack:
                gcd = math.gcd(*(b.dilation_rate for b in self.blocks[i:]))
                factor = gcd // stride
                if factor > 1:  # keep T - 1 and every factor-th step before it
                    x = x[:, (x.shape[1] - 1) % factor :: factor]
                stride = gcd
                options["dilation_rate"] = block.dilation_rate // stride
            x, residual, *streamed = block(x, training=training, **options)
            skips.append(residual[:, -1] if last_only else residual)
            if streamed:  # the block's new cache
                new_cache.extend(streamed[0])
        if self.skip_connections:
            return ops.sum(ops.stack(skips), axis=0), new_cache
        return (x[:, -1, :] if last_only else x), new_cache

    def compute_output_spec(self, inputs, training=None, all_steps=False, cache=None):
        """Symbolic output; `compute_output_shape` alone cannot see `all_steps` or `cache`."""
        steps = self.return_sequences or all_steps or cache is not None
        shape = (*inputs.shape[:-1], self.filters) if steps else (inputs.shape[0], self.filters)
        outputs = keras.KerasTensor(shape, dtype=self.compute_dtype)
        if cache is None:
            return outputs
        dtypes = [self.compute_dtype] * len(cache)
        if self.pooling == "mean" and not self.return_sequences:
            dtypes[-2:] = ["float32", "float32"]  # the running sum and count
        return outputs, [
            keras.KerasTensor(c.shape, dtype=d) for c, d in zip(cache, dtypes, strict=True)
        ]

    def compute_output_shape(self, input_shape):
        if self.return_sequences:
            return (*input_shape[:-1], self.filters)
        return (input_shape[0], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "dilations": self.dilations,
            "stacks": self.stacks,
            "dropout": self.dropout,
            "activation": self.activation,
            "norm": self.norm,
            "skip_connections": self.skip_connections,
            "return_sequences": self.return_sequences,
            "pooling": self.pooling,
        }
