"""What this CPU's matrix products reach, float32: the roofline the training and streaming
figures are read against.

    python benchmarks/gemm_rate.py [--repeats 5]

Three shapes, NumPy (its BLAS) and TensorFlow (`tf.linalg.matmul`), best of `--repeats`:
a square 2048^3 product (the machine's practical peak); 200704 x 448 x 64, what one convolution
of the wide pixel TCN is as a matrix product (256 sequences x 784 steps, 7 taps x 64 channels
in, 64 out); and 256 x 175 x 25, one convolution of a streaming step of the default pixel TCN
for 256 streams at once (7 taps x 25 channels).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

SHAPES = [(2048, 2048, 2048), (256 * 784, 7 * 64, 64), (256, 7 * 25, 25)]


def gflops(product: Callable[[], object], flops: float, repeats: int) -> float:
    """Best rate over `repeats`, each timing enough products for about 2 GFLOP."""
    inner = max(1, int(2e9 // flops))
    product()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            product()
        best = min(best, time.perf_counter() - start)
    return flops * inner / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import tensorflow as tf

    print("| m x k x n | NumPy GFLOP/s | TensorFlow GFLOP/s |")
    print("|---|---:|---:|")
    for m, k, n in SHAPES:
        rng = np.random.default_rng(0)
        a, b = rng.random((m, k), np.float32), rng.random((k, n), np.float32)
        ta, tb = tf.constant(a), tf.constant(b)
        flops = 2.0 * m * k * n
        on_numpy = gflops(lambda a=a, b=b: a @ b, flops, args.repeats)
        on_tf = gflops(lambda a=ta, b=tb: tf.linalg.matmul(a, b).numpy(), flops, args.repeats)
        print(f"| {m} x {k} x {n} | {on_numpy:.0f} | {on_tf:.0f} |")


if __name__ == "__main__":
    main()
