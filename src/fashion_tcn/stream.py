"""Streaming inference for a trained TCN classifier: steps in, a prediction after each one out.

The layers do the streaming: every causal convolution takes and returns its cache, the last
`(kernel_size - 1) * dilation` inputs it needs (`layers.CausalConv1D`), so a new step costs one
kernel application per layer instead of a pass over the whole prefix. `StepModel` wires a trained
classifier's own layers (same weights, same arithmetic) into a model from (steps, state) to
(predictions after each step, new state): it runs on every backend, compiles, and exports
(`export.export(..., "step")`). `StreamingClassifier` only keeps the state between calls.

Batch norm streams at inference, where it is a fixed per-channel affine map; in training its
statistics span every step of the batch, which is not a streaming operation (nothing here trains).
"""

from __future__ import annotations

import copy

import keras
import numpy as np

from fashion_tcn import litestep, ringstep
from fashion_tcn.layers import TCN

ENGINES = ("auto", "numpy", "keras", "tflite")


def _tcn(model: keras.Model) -> TCN:
    tcn = next((layer for layer in model.layers if isinstance(layer, TCN)), None)
    if tcn is None:
        raise ValueError("streaming needs a TCN model")
    return tcn


def _encoder(model: keras.Model):
    return next((layer for layer in model.layers if layer.name == "step_encoder"), None)


class StepModel(keras.Model):
    """A TCN classifier (`models.build_model`, `build_classifier`) as a stream step, sharing its
    layers (its weights and arithmetic): `[steps (B, T, features) in [0, 1], *state]` ->
    `[probabilities (B, T, 10) after each step, *new state]`. Zeros start a stream; the state's
    shapes are `state_shapes` (`TCN.cache_shapes`), in float32 whatever the model's precision.

    A subclass rather than a functional model: Keras's functional graph expects a layer called
    twice to return the same structure both times, and the TCN returns its cache only here.
    """

    def __init__(self, classifier: keras.Model, **kwargs):
        super().__init__(name="stream", **kwargs)
        self.tcn = _tcn(classifier)
        self.standardize = classifier.get_layer("standardize")
        self.encoder = _encoder(classifier)  # per step by construction
        self.head = classifier.get_layer("classifier")
        self.features = self.standardize.output.shape[-1]
        self.state_shapes = self.tcn.cache_shapes()
        self.built = True  # its layers are the trained model's, built and loaded

    def call(self, inputs, training=False):
        steps, *state = inputs
        x = self.standardize(steps)
        if self.encoder is not None:
            x = self.encoder(x)
        x, new_state = self.tcn(x, cache=state, training=training)
        return [self.head(x), *(keras.ops.cast(s, "float32") for s in new_state)]


class StreamingClassifier:
    """Feed a TCN classifier one step, or a chunk of steps, at a time.

    Example:
        >>> stream = StreamingClassifier(model, batch=1)
        >>> for t in range(784):
        ...     probs = stream.step(pixels[:, t])      # (1, 10) after seeing steps 0..t
        >>> stream.reset()

    Outputs equal the full-sequence model's prediction for every prefix (tested to 1e-5).
    `engine`: "numpy" steps in NumPy with ring buffers (`ringstep`, no copy of the state, no graph
    dispatch: many times faster on the CPU), "keras" through the compiled `StepModel` (the
    layers' own calls, and the arithmetic of a mixed precision), "tflite" in the TFLite
    interpreter with the state inside it (`litestep`: the fastest single stream, on TensorFlow;
    seconds to compile per batch size), "auto" NumPy where it reproduces the model.
    """

    def __init__(self, model: keras.Model, batch: int = 1, engine: str = "auto"):
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
        self.model = StepModel(model)
        if engine == "auto":
            engine = "numpy" if ringstep.supports(model) else "keras"
        if engine == "tflite" and not litestep.supports(model):
            raise ValueError("the tflite engine needs Keras on TensorFlow and a float32 model")
        if engine == "numpy":
            self._stepper = ringstep.RingStep(model, self.model.tcn, self.model.encoder, batch)
        elif engine == "tflite":
            self._stepper = litestep.LiteStep(self.model, batch)
        else:
            self._stepper, self._step = None, _compiled(self.model)
        self.engine, self.batch = engine, batch
        self.reset(batch)

    def fresh(self) -> StreamingClassifier:
        """Another stream from the start on the same weights (and compiled step): one set-up
        serves every client of a server."""
        other = copy.copy(self)
        other._stepper = copy.copy(self._stepper)  # its own state, the same weights
        other.reset()
        return other

    def reset(self, batch: int | None = None) -> None:
        """Forget every stream; optionally change how many streams run side by side."""
        self.batch = batch or self.batch
        self.steps_seen = 0
        if self._stepper is not None:
            self._stepper.reset(self.batch)
            return
        self.state = [
            np.zeros((self.batch, *shape), "float32") for shape in self.model.state_shapes
        ]

    def run(self, sequences: np.ndarray) -> np.ndarray:
        """(B, T, features) chunk -> (B, T, 10) probabilities after each of its steps."""
        x = np.asarray(sequences, "float32")
        self.steps_seen += x.shape[1]
        if self._stepper is not None:
            return np.stack([self._stepper.step(x[:, t]) for t in range(x.shape[1])], axis=1)
        probs, *self.state = self._step([x, *self.state])
        return keras.ops.convert_to_numpy(probs)

    def step(self, x: np.ndarray) -> np.ndarray:
        """x: (B, features) for the next step -> (B, 10) class probabilities so far."""
        if self._stepper is not None:
            self.steps_seen += 1
            return self._stepper.step(x)
        return self.run(np.asarray(x).reshape(self.batch, 1, -1))[:, 0]


def _compiled(model: keras.Model):
    """`model`'s inference call, compiled once per input shape: `predict_on_batch` costs
    milliseconds of bookkeeping per call, which a stream pays at every step."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda inputs: model(inputs, training=False), jit_compile=True)
    if backend == "jax":
        import jax

        call = jax.jit(lambda t, o, inputs: model.stateless_call(t, o, inputs, training=False)[0])
        # the variables' current arrays at each call: Keras's own predict donates them, so
        # arrays taken once would be deleted by the next `predict` on the same model
        return lambda inputs: call(
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            inputs,
        )
    return lambda inputs: model(inputs, training=False)


def _kernel_flops(layer) -> int:
    """2 x multiply-adds of a convolution or dense layer applied at one position."""
    return 2 * int(np.prod(layer.kernel.shape))


def flops_per_step(model: keras.Model) -> int:
    """Per sequence: the convolutions, shortcuts, step encoder and classifier for one new step."""
    tcn = _tcn(model)
    flops = sum(
        _kernel_flops(layer)
        for block in tcn.blocks
        for layer in [*block.convs, *([block.shortcut] if block.shortcut is not None else [])]
    )
    encoder = _encoder(model)
    if encoder is not None:  # (1, k) convolutions along the step, two per stage
        features = encoder.input.shape[-1]  # positions in stage s: features // 2**s
        flops += sum(
            features // 2 ** (i // 2) * _kernel_flops(conv) for i, conv in enumerate(encoder.convs)
        )
    return flops + _kernel_flops(model.get_layer("classifier"))


def state_size(model: keras.Model) -> int:
    """Numbers one stream keeps between steps: every convolution's cache (and a running mean)."""
    return sum(int(np.prod(shape)) for shape in _tcn(model).cache_shapes())


def step_cost(model: keras.Model) -> dict[str, int] | None:
    """What one new step costs a stream of one sequence: FLOPs (2 per multiply-add, layers and
    classifier) and the numbers kept between steps. A TCN keeps its convolutions' caches; an
    LSTM or GRU keeps its state (2 x units or units) and runs its gates' kernels once per step.
    None for a model that reads the whole image (the CNN)."""
    names = {layer.name for layer in model.layers}
    if "tcn" in names:
        return {"flops": flops_per_step(model), "state": state_size(model)}
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
