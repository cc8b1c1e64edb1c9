"""A TCN classifier's stream step compiled to TFLite, its state kept inside the interpreter.

The exported step (`export.export_step`) takes every cache in and hands a shifted copy out, so
Python moves the whole state twice per step. Here the caches are TFLite resource variables that
the graph reads and overwrites itself: a step is one `set_tensor`, one `invoke` and one
`get_tensor`, the least a Python caller can do per step (one stream of the default pixel TCN:
about 0.05 ms, against 0.15 ms for the NumPy ring buffers); a reset is a new interpreter on the
same flatbuffer, its variables initialised to zeros (a few ms). The graph still shifts each cache by
a step, the whole state (300 KB a stream), so many streams side by side step faster in NumPy
(`ringstep`), which writes one row per convolution. Needs Keras on TensorFlow; the arithmetic is
the `StepModel`'s own, in float32.
"""

from __future__ import annotations

import tempfile
import warnings

import keras
import numpy as np


def supports(model: keras.Model) -> bool:
    """Whether the step can be compiled here: Keras on TensorFlow, a float32 model."""
    return keras.backend.backend() == "tensorflow" and all(
        layer.compute_dtype == "float32" for layer in model.layers
    )


def _flatbuffer(step_model: keras.Model, batch: int) -> bytes:
    """TFLite signature "step": `step` (batch, 1, features) -> `probabilities` (batch, 10), the
    caches (zeros to start) updated in place."""
    import tensorflow as tf

    # the weights as constants: left as Keras variables, they became resource variables too,
    # and the interpreter read them as NaN
    weights = [
        [tf.constant(keras.ops.convert_to_numpy(v)) for v in variables]
        for variables in (step_model.trainable_variables, step_model.non_trainable_variables)
    ]
    spec = tf.TensorSpec((batch, 1, step_model.features), tf.float32, name="step")

    class Stateful(tf.Module):
        def __init__(self):
            super().__init__()
            self.caches = [
                tf.Variable(tf.zeros((batch, *shape)), trainable=False)
                for shape in step_model.state_shapes
            ]

        @tf.function(input_signature=[spec])
        def step(self, x):
            caches = [cache.read_value() for cache in self.caches]
            (probs, *new), _ = step_model.stateless_call(*weights, [x, *caches], training=False)
            for cache, value in zip(self.caches, new, strict=True):
                cache.assign(value)
            return {"probabilities": probs[:, 0]}

    module = Stateful()
    with tempfile.TemporaryDirectory() as saved:
        tf.saved_model.save(module, saved, signatures={"step": module.step.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=["step"])
        converter.experimental_enable_resource_variables = True
        return converter.convert()


class LiteStep:
    """Streams stepped in the TFLite interpreter: `step(x)` (B, features) -> (B, 10)."""

    def __init__(self, step_model: keras.Model, batch: int = 1):
        self.step_model, self.batch = step_model, None
        self.reset(batch)

    def reset(self, batch: int) -> None:
        """Every stream from the start: a new interpreter (a new batch size: compiled again,
        seconds). A copy of this object made before the reset keeps its own."""
        if batch != self.batch:
            self.batch, self.flatbuffer = batch, _flatbuffer(self.step_model, batch)
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            self.interpreter = tf.lite.Interpreter(model_content=self.flatbuffer, num_threads=1)
        self.interpreter.allocate_tensors()
        runner = self.interpreter.get_signature_runner("step")
        self._x = runner.get_input_details()["step"]["index"]
        self._probs = runner.get_output_details()["probabilities"]["index"]

    def step(self, x: np.ndarray) -> np.ndarray:
        """Low-level calls, not the signature runner's: it resizes and allocates every call."""
        interpreter = self.interpreter
        interpreter.set_tensor(self._x, np.asarray(x, "float32").reshape(self.batch, 1, -1))
        interpreter.invoke()
        return interpreter.get_tensor(self._probs)
