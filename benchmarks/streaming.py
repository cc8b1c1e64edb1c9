"""Streaming vs recomputing the prefix, and the stream engines, on pixel sequences.

    python benchmarks/streaming.py                  # the default pixel TCN (random weights)
    python benchmarks/streaming.py --run runs/X     # a trained pixel/permuted run
    python benchmarks/streaming.py --batches 1,256
    python benchmarks/streaming.py --torch          # + pytorch-tcn's own streaming (1 stream)

A classifier that must answer after every new pixel can either re-run the whole prefix
(`model.predict_on_batch` on steps 0..t, what keras-tcn offers) or stream (one kernel application
per layer from the convolutions' pasts: fashion_tcn.stream, one `step` call per pixel). Both give
the same numbers (tests/test_stream.py). The stream runs in one of three engines: "keras" (the
compiled `StepModel`, state in and out), "numpy" (`ringstep`, ring buffers updated in place) and,
on TensorFlow, "tflite" (`litestep`, the step in the TFLite interpreter with the state inside
it). `--torch` adds pytorch-tcn 1.2.x's streaming inference (`forward(x, inference=True)`, its
padding buffers updated in place) on the same shape with random weights; it streams one sequence
at a time (batch 1). Engines are timed interleaved, best of `--repeats`.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from fashion_tcn.config import Config, override
from fashion_tcn.models import build_model
from fashion_tcn.stream import StreamingClassifier, flops_per_step


def _best_of(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


class TorchStream:
    """pytorch-tcn's streaming inference on the default pixel TCN's shape, one stream."""

    def __init__(self, cfg):
        import torch
        from pytorch_tcn import TCN

        self.torch = torch
        channels = [cfg.filters] * len(cfg.dilations)
        self.tcn = TCN(
            1, channels, cfg.kernel_size, dilations=cfg.dilations, causal=True,
            use_norm="layer_norm", dropout=0.0, input_shape="NLC",
        ).eval()  # fmt: skip
        self.head = torch.nn.Linear(cfg.filters, 10).eval()

    def reset(self) -> None:
        self.tcn.reset_buffers()

    def step(self, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            out = self.tcn(self.torch.from_numpy(x).reshape(1, 1, -1), inference=True)
            return self.torch.softmax(self.head(out[:, -1]), -1).numpy()


def engine_table(model: keras.Model, batches: list[int], repeats: int, torch_cfg=None) -> list:
    """Per engine and batch: seconds per step (all streams of the batch stepping once)."""
    rows = []
    for batch in batches:
        x = np.random.default_rng(0).random((batch, 784, 1)).astype("float32")
        steps = 784 if batch <= 16 else 98  # a whole sequence, or its first eighth
        names = ["keras", "numpy"] + ["tflite"] * (keras.backend.backend() == "tensorflow")
        engines = {name: StreamingClassifier(model, batch, engine=name) for name in names}
        if torch_cfg is not None and batch == 1:
            engines["pytorch-tcn"] = TorchStream(torch_cfg)
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
    parser.add_argument("--torch", action="store_true", help="add pytorch-tcn (one stream)")
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
    one_stream = {}
    for name, batch, seconds, keras_seconds in engine_table(
        variable, batches, args.repeats, cfg.model if args.torch else None
    ):
        if batch == 1:
            one_stream[name] = seconds
        print(
            f"| {name} | {batch} | {seconds * 1e3:.3f} | {batch / seconds:,.0f} "
            f"| {keras_seconds / seconds:.1f}x |"
        )
    one_stream.pop("pytorch-tcn", None)  # the prefix table is about fashion-tcn's own engines
    if not one_stream:
        return
    fastest = min(one_stream, key=one_stream.get)
    stream_step = one_stream[fastest]
    print(f"\none stream ({fastest} engine) against recomputing the prefix:")
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
