"""Streaming vs recomputing the prefix, and the two stream engines, on pixel sequences.

    python benchmarks/streaming.py                  # the default pixel TCN (random weights)
    python benchmarks/streaming.py --run runs/X     # a trained pixel/permuted run
    python benchmarks/streaming.py --batches 1,256 --tflite

A classifier that must answer after every new pixel can either re-run the whole prefix
(`model.predict_on_batch` on steps 0..t, what keras-tcn offers) or stream (one kernel application
per layer from the convolutions' pasts: fashion_tcn.stream, one `step` call per pixel). Both give
the same numbers (tests/test_stream.py). The stream runs in one of two engines: "keras" (the
compiled `StepModel`, state in and out) and "numpy" (`ringstep`, ring buffers updated in place);
`--tflite` adds the exported TFLite step (`export --format step`) run in the TFLite interpreter,
state in and out, as a reference. Engines are timed interleaved, best of `--repeats`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from fashion_tcn.config import Config, override
from fashion_tcn.models import build_model
from fashion_tcn.stream import StreamingClassifier, flops_per_step


class _TFLiteStream:
    """The exported step in the TFLite interpreter: one `invoke` per step, state copied in and
    out (the interpreter's lowest-level calls, not the signature runner's dictionaries)."""

    def __init__(self, model: keras.Model, batch: int):
        import tensorflow as tf

        from fashion_tcn.export import export_step

        with tempfile.TemporaryDirectory() as folder:
            path = export_step(model, Path(folder) / "step.tflite")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
                self.interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=1)
        runner = self.interpreter.get_signature_runner("step")
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        del runner  # resizing needs the interpreter's tensors unreferenced
        for detail in inputs.values():
            self.interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
        self.interpreter.allocate_tensors()
        self.step_in = inputs["step"]["index"]
        self.probabilities = outputs["probabilities"]["index"]
        self.state = [(inputs[n]["index"], outputs[n]["index"]) for n in inputs if n != "step"]
        self.shapes = {inputs[n]["index"]: inputs[n]["shape"] for n in inputs}
        self.batch = batch

    def reset(self) -> None:
        for index, _ in self.state:
            shape = [self.batch, *self.shapes[index][1:]]
            self.interpreter.set_tensor(index, np.zeros(shape, "float32"))

    def step(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.step_in, x.reshape(self.batch, 1, -1))
        self.interpreter.invoke()
        for index_in, index_out in self.state:
            self.interpreter.set_tensor(index_in, self.interpreter.get_tensor(index_out))
        return self.interpreter.get_tensor(self.probabilities)


def _best_of(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def _engines(model: keras.Model, batch: int, tflite: bool) -> dict:
    engines = {e: StreamingClassifier(model, batch, engine=e) for e in ("keras", "numpy")}
    if tflite and keras.backend.backend() == "tensorflow":
        engines["tflite"] = _TFLiteStream(model, batch)
    return engines


def engine_table(model: keras.Model, batches: list[int], repeats: int, tflite: bool) -> list:
    """Per engine and batch: seconds per step (all streams of the batch stepping once)."""
    rows = []
    for batch in batches:
        x = np.random.default_rng(0).random((batch, 784, 1)).astype("float32")
        steps = 784 if batch <= 16 else 98  # a whole sequence, or its first eighth
        engines = _engines(model, batch, tflite)
        best = dict.fromkeys(engines, float("inf"))
        for _ in range(repeats):  # interleaved, so a busy moment hits every engine
            for name, engine in engines.items():
                engine.reset()
                start = time.perf_counter()
                for t in range(steps):
                    engine.step(x[:, t])
                best[name] = min(best[name], (time.perf_counter() - start) / steps)
        rows += [(name, batch, seconds, best["keras"]) for name, seconds in best.items()]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="a trained run directory (pixels or permuted)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,256", help="streams stepping together")
    parser.add_argument("--tflite", action="store_true", help="also the exported TFLite step")
    args = parser.parse_args()
    cfg = override(Config(), {"data.sequence": "pixels"}).resolved()
    variable = build_model(cfg.model, None, 1)  # any prefix length
    if args.run:
        variable.set_weights(keras.saving.load_model(f"{args.run}/model.keras").get_weights())
    per_step = flops_per_step(variable)
    print(
        f"model: {cfg.model.filters} filters, kernel {cfg.model.kernel_size}, dilations "
        f"{cfg.model.dilations}, {variable.count_params():,} parameters, "
        f"backend {keras.backend.backend()}"
    )
    batches = [int(b) for b in args.batches.split(",")]
    print("| engine | streams | ms per step | stream-steps/s | vs keras |")
    print("|---|---|---|---|---|")
    stream_step = None
    for name, batch, seconds, keras_seconds in engine_table(
        variable, batches, args.repeats, args.tflite
    ):
        if batch == 1 and name == "numpy":
            stream_step = seconds
        print(
            f"| {name} | {batch} | {seconds * 1e3:.3f} | {batch / seconds:,.0f} "
            f"| {keras_seconds / seconds:.1f}x |"
        )
    if stream_step is None:
        return
    print("\none stream (numpy engine) against recomputing the prefix:")
    print("| step t | recompute FLOPs | stream FLOPs | recompute ms | stream ms | speed-up |")
    print("|---|---|---|---|---|---|")
    x = np.random.default_rng(0).random((1, 784, 1)).astype("float32")
    for t in (98, 196, 392, 784):
        prefix = x[:, :t]
        variable.predict_on_batch(prefix)  # trace once per length
        recompute = _best_of(lambda p=prefix: variable.predict_on_batch(p), args.repeats)
        print(
            f"| {t} | {t * per_step / 1e6:.1f} M | {per_step / 1e3:.1f} K "
            f"| {recompute * 1e3:.2f} | {stream_step * 1e3:.3f} | {recompute / stream_step:.0f}x |"
        )


if __name__ == "__main__":
    main()
