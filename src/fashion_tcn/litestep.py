"""A TCN classifier's stream step compiled to TFLite, its state kept inside the interpreter.

The exported step (`export.export_step`) takes every cache in and hands a shifted copy out, so
Python moves the whole state twice per step. Here the caches are TFLite resource variables that
the graph reads and overwrites itself: a step is one `set_tensor` for the new values, one for
which streams start afresh, one `invoke` and one `get_tensor`, the least a Python caller can do
per step (one stream of the default pixel TCN: 0.09 ms, against 0.33 ms for the NumPy ring
buffers). The graph still shifts each cache by a step, the whole state (300 KB a stream), so
many streams side by side step faster in NumPy (`ringstep`), which writes one row per
convolution. Needs Keras on TensorFlow; the model's arithmetic is the `StepModel`'s own, float32.
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
    """TFLite signature "step": `step` (batch, 1, features) and `keep` (batch,), 0 for a stream
    that starts afresh -> `probabilities` (batch, 10), the caches updated in place."""
    import tensorflow as tf

    # the weights as constants: left as variables, the converter would keep them as resource
    # variables too, which the interpreter never initialises
    weights = [
        [tf.constant(keras.ops.convert_to_numpy(v)) for v in variables]
        for variables in (step_model.trainable_variables, step_model.non_trainable_variables)
    ]

    class Stateful(tf.Module):
        def __init__(self):
            super().__init__()
            self.caches = [
                tf.Variable(tf.zeros((batch, *shape)), trainable=False)
                for shape in step_model.state_shapes
            ]

        @tf.function(
            input_signature=[
                tf.TensorSpec((batch, 1, step_model.features), tf.float32, name="step"),
                tf.TensorSpec((batch,), tf.float32, name="keep"),
            ]
        )
        def step(self, x, keep):
            kept = keep > 0  # a select, not a product: no NaN survives a reset
            caches = [
                tf.where(tf.reshape(kept, [-1] + [1] * (c.shape.rank - 1)), c.read_value(), 0.0)
                for c in self.caches
            ]
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
        self.step_model = step_model
        self.reset(batch)

    def reset(self, batch: int) -> None:
        """Every stream starts afresh at the next step (a new batch size: compiled again, s)."""
        if getattr(self, "batch", None) != batch:
            self.batch, self.flatbuffer = batch, _flatbuffer(self.step_model, batch)
            self._open()
        self.keep, self._ones = np.zeros(batch, "float32"), np.ones(batch, "float32")

    def _open(self) -> None:
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            self.interpreter = tf.lite.Interpreter(model_content=self.flatbuffer, num_threads=1)
        self.interpreter.allocate_tensors()
        runner = self.interpreter.get_signature_runner("step")
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        self._x, self._keep = inputs["step"]["index"], inputs["keep"]["index"]
        self._probs = outputs["probabilities"]["index"]

    def __copy__(self) -> LiteStep:
        """The same compiled step in an interpreter of its own (its own caches)."""
        other = object.__new__(LiteStep)
        other.__dict__.update(self.__dict__)
        other._open()
        other.keep = np.zeros(self.batch, "float32")
        return other

    def step(self, x: np.ndarray) -> np.ndarray:
        interpreter = self.interpreter
        interpreter.set_tensor(self._x, np.asarray(x, "float32").reshape(self.batch, 1, -1))
        interpreter.set_tensor(self._keep, self.keep)
        interpreter.invoke()
        self.keep = self._ones
        return interpreter.get_tensor(self._probs)
