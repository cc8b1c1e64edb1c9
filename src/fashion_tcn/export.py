"""Exports for serving, all TensorFlow formats: SavedModel (TF Serving), TFLite, ONNX, and the
TFLite stream step of a TCN. The one part of the package that needs TensorFlow whatever the Keras
backend."""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras

from fashion_tcn.config import ConfigError
from fashion_tcn.files import atomic_path
from fashion_tcn.layers import TCN
from fashion_tcn.models import takes_images
from fashion_tcn.rundir import RunDir
from fashion_tcn.stream import StepModel

EXPORT_FORMATS = ("savedmodel", "tflite", "step", "onnx")


def export_step(model: keras.Model, target: Path) -> Path:
    """A TFLite flatbuffer whose signature "step" takes one step per stream, `step` (B, 1,
    features), and the state, `state_0`, `state_1`, ... (zeros to start), and returns
    `probabilities` (B, 1, 10) and `state_0`, ... to pass to the next call. Needs Keras on
    TensorFlow."""
    import tensorflow as tf

    stream = StepModel(model)
    signature = [tf.TensorSpec((None, 1, stream.features), tf.float32, name="step")]
    signature += [
        tf.TensorSpec((None, *shape), tf.float32, name=f"state_{i}")
        for i, shape in enumerate(stream.state_shapes)
    ]

    def step(x, *state):
        probs, *new_state = stream([x, *state], training=False)
        return {"probabilities": probs, **{f"state_{i}": s for i, s in enumerate(new_state)}}

    archive = keras.export.ExportArchive()
    archive.track(stream)
    archive.add_endpoint("step", step, input_signature=signature)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as saved:
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=["step"])
        flatbuffer = converter.convert()
    with atomic_path(target) as partial:
        partial.write_bytes(flatbuffer)
    return target


def export_onnx(model: keras.Model, target: Path) -> Path:
    """An ONNX graph (input `image` or `sequence` as the model takes it, output
    `probabilities`) for onnxruntime and other ONNX clients. Needs Keras on TensorFlow and
    tf2onnx. The graph is frozen first: tf2onnx would leave captured constants (the
    standardisation's mean and variance) as inputs a client must feed."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    try:
        import tf2onnx
    except ImportError as error:
        raise ConfigError("ONNX export needs tf2onnx: pip install -e '.[onnx]'") from error

    spec = model.inputs[0]
    input_name = "image" if takes_images(model) else "sequence"
    signature = tf.TensorSpec(spec.shape, spec.dtype, name=input_name)
    serve = tf.function(lambda x: model(x, training=False), input_signature=[signature])
    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    proto, _ = tf2onnx.convert.from_graph_def(
        frozen.graph.as_graph_def(),
        input_names=[frozen.inputs[0].name],
        output_names=[frozen.outputs[0].name],
    )
    _rename(proto.graph, frozen.inputs[0].name, input_name)
    _rename(proto.graph, frozen.outputs[0].name, "probabilities")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as partial:
        partial.write_bytes(proto.SerializeToString())
    return target


def _rename(graph, old: str, new: str) -> None:
    """Rename a tensor of an ONNX graph everywhere it occurs (tf2onnx keeps TF's "x:0")."""
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in (*graph.input, *graph.output):
        if value.name == old:
            value.name = new


def export(run_dir: Path, fmt: str, out: Path | None = None) -> Path:
    """SavedModel (TF Serving; signature `serve`), a TFLite flatbuffer of the run's model,
    "step": a TFLite stream step of a TCN (`export_step`), or ONNX (`export_onnx`).

    All are TensorFlow formats, so this is the one command that needs TensorFlow installed
    whatever the Keras backend (on JAX, Keras converts the model with jax2tf).
    """
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ConfigError(
            "export needs TensorFlow: pip install -e '.[cpu]' (or '.[gpu]')"
        ) from error

    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(EXPORT_FORMATS)}")
    if fmt != "savedmodel" and keras.backend.backend() != "tensorflow":
        # the converter rejects the uint32 seed variables a JAX-built model carries
        raise ConfigError(
            f"{fmt} export needs Keras on TensorFlow: run it with KERAS_BACKEND=tensorflow "
            "(model.keras is the same file on every backend)"
        )
    run = RunDir(run_dir)
    model = run.model()
    if fmt == "step":
        if not any(isinstance(layer, TCN) for layer in model.layers):
            raise ConfigError(f"{run_dir}: --format step streams TCN models only")
        return export_step(model, out or run.step_export)
    if fmt == "onnx":
        return export_onnx(model, out or run.onnx_export)
    saved = out if fmt == "savedmodel" and out else run.savedmodel_export
    model.export(str(saved), format="tf_saved_model", verbose=False)
    if fmt == "savedmodel":
        return saved
    target = out or run.tflite_export
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as partial:
        partial.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert())
    return target
