"""Streaming vs recomputing the prefix: FLOPs and wall-clock per new step, pixel sequences.

    python benchmarks/streaming.py                  # the default pixel TCN (random weights)
    python benchmarks/streaming.py --run runs/X     # a trained pixel/permuted run

A classifier that must answer after every new pixel can either re-run the whole prefix
(`model.predict_on_batch` on steps 0..t, what keras-tcn offers) or stream (one kernel application
per layer from the convolutions' caches: fashion_tcn.stream, one `step` call per pixel). Both give
the same numbers (tests/test_stream.py); this prints what each costs at step t, batch of one
stream.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="a trained run directory (pixels or permuted)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cfg = override(Config(), {"data.sequence": "pixels"}).resolved()
    variable = build_model(cfg.model, None, 1)  # any prefix length
    if args.run:
        variable.set_weights(keras.saving.load_model(f"{args.run}/model.keras").get_weights())
    stream = StreamingClassifier(variable, batch=1)
    per_step = flops_per_step(variable)
    x = np.random.default_rng(0).random((1, 784, 1)).astype("float32")

    # streaming: mean time per step over a whole 784-step sequence, one call per step
    def whole_stream() -> None:
        stream.reset()
        for t in range(784):
            stream.step(x[:, t])

    stream_step = _best_of(whole_stream, args.repeats) / 784

    print(
        f"model: {cfg.model.filters} filters, kernel {cfg.model.kernel_size}, dilations "
        f"{cfg.model.dilations}, {variable.count_params():,} parameters, batch 1"
    )
    print(
        "| step t | recompute FLOPs | stream FLOPs | FLOPs ratio | recompute ms | stream ms "
        "| speed-up |"
    )
    print("|---|---|---|---|---|---|---|")
    for t in (98, 196, 392, 784):
        prefix = x[:, :t]
        variable.predict_on_batch(prefix)  # trace once per length
        recompute = _best_of(lambda p=prefix: variable.predict_on_batch(p), args.repeats)
        flops = t * per_step  # every layer recomputed at every step of the prefix
        print(
            f"| {t} | {flops / 1e6:.1f} M | {per_step / 1e3:.1f} K | {flops / per_step:.0f}x "
            f"| {recompute * 1e3:.2f} | {stream_step * 1e3:.3f} | "
            f"{recompute / stream_step:.0f}x |"
        )


if __name__ == "__main__":
    main()
