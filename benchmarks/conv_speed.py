"""Which form of the causal dilated convolution trains fastest on this backend and machine.

    python benchmarks/conv_speed.py [--shapes rows bai wide] [--repeats 2] [--batches 2]

Four forms of the same convolution, each a stack of one shape's convolutions (ReLU between
them), trained on random inputs with Keras `fit`, interleaved, best repeat kept:
    conv     the backend's dilated convolution on the causally padded input (layers.py on JAX)
    concat   the k shifted slices concatenated along channels, then one matmul
    matmuls  one matmul per tap, summed (the form a streaming step takes)
    fold     the d interleaved subsequences of a dilation-d convolution folded into the batch,
             (B, T, C) -> (B*d, T/d, C), and convolved undilated (`CausalConv1D._folded`, what
             layers.py uses on TensorFlow, where it was the fastest)
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from keras import ops

from fashion_tcn.layers import CausalConv1D

SHAPES = {  # steps, channels, kernel, dilations, batch
    "rows": (28, 64, 3, [1, 2, 4, 8] * 2, 128),
    "bai": (784, 25, 7, [2**i for i in range(8)], 64),
    "wide": (784, 64, 7, [2**i for i in range(8)], 256),
}
FORMS = ("conv", "concat", "matmuls", "fold")


class Causal(keras.layers.Layer):
    """A causal dilated convolution computed in one of FORMS."""

    def __init__(self, channels: int, kernel: int, dilation: int, form: str, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.k, self.d, self.form = channels, kernel, dilation, form

    def build(self, input_shape):
        self.w = self.add_weight(shape=(self.k, input_shape[-1], self.channels))
        self.fold = CausalConv1D(self.channels, self.k, self.d)  # its fold, on these weights
        self.fold.kernel = self.w

    def call(self, x):
        steps = x.shape[1]
        if self.form == "fold" and self.d > 1:
            return self.fold._folded(x, self.d)
        padded = ops.pad(x, ((0, 0), ((self.k - 1) * self.d, 0), (0, 0)))
        if self.form in ("conv", "fold"):
            return ops.conv(padded, self.w, padding="valid", dilation_rate=self.d)
        taps = [padded[:, j * self.d : j * self.d + steps] for j in range(self.k)]
        if self.form == "concat":
            flat = ops.reshape(self.w, (-1, self.channels))
            return ops.matmul(ops.concatenate(taps, axis=-1), flat)
        return sum(ops.matmul(tap, self.w[j]) for j, tap in enumerate(taps))


def build(shape: str, form: str) -> tuple[keras.Model, int, int]:
    steps, channels, kernel, dilations, batch = SHAPES[shape]
    inputs = keras.Input((steps, channels))
    x = inputs
    for d in dilations:
        x = keras.layers.ReLU()(Causal(channels, kernel, d, form)(x))
    model = keras.Model(inputs, keras.layers.Dense(10)(x[:, -1]))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    return model, steps, batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batches", type=int, default=2, help="timed batches per repeat")
    args = parser.parse_args()
    print(f"Keras {keras.__version__} on {keras.backend.backend()}")
    print("| shape | " + " | ".join(f"{f} samples/s" for f in FORMS) + " | fastest |")
    print("|---|" + "---|" * (len(FORMS) + 1))
    rng = np.random.default_rng(0)
    for shape in args.shapes:
        runs = {}
        for form in FORMS:
            model, steps, batch = build(shape, form)
            x = rng.random((batch * args.batches, steps, SHAPES[shape][1]), dtype=np.float32)
            y = rng.integers(0, 10, len(x))
            model.fit(x[:batch], y[:batch], batch_size=batch, verbose=0)  # tracing
            runs[form] = (model, x, y, batch)
        best = dict.fromkeys(FORMS, 0.0)
        for _ in range(args.repeats):
            for form, (model, x, y, batch) in runs.items():
                start = time.perf_counter()
                model.fit(x, y, batch_size=batch, verbose=0, shuffle=False)
                best[form] = max(best[form], len(x) / (time.perf_counter() - start))
        cells = " | ".join(f"{best[f]:,.0f}" for f in FORMS)
        print(f"| {shape} | {cells} | {max(best, key=best.get)} |")


if __name__ == "__main__":
    main()
