"""fashion-tcn's TCN against the field's TCN libraries on the same shapes, interleaved in one run.

    python benchmarks/peer_speed.py [--shapes bai wide] [--repeats 3] [--batches 4]
    python benchmarks/peer_speed.py --torch      # + pytorch-tcn (on its GPU when torch sees one)
    python benchmarks/peer_speed.py --fold always  # every-step pass with the folded convolution

Shapes (784 x 1 pixel sequences, 10 classes, ReLU, no dropout, no skip connections):
    bai   25 filters, kernel 7, dilations 1-128, no normalization, batch 64 (Bai et al., 2018)
    wide  64 filters, kernel 7, dilations 1-128, no normalization, batch 256 (pixels-wide.yaml)

Contenders are fashion-tcn's `layers.TCN` (also made to compute every step and classify the
last, to show what its last-step path saves) and keras-tcn 3.5.x (Keras on TensorFlow;
`pip install --no-deps keras-tcn`) under each of `--precisions` (float32 by default), and with
`--torch` pytorch-tcn (float32, and bf16 autocast + torch.compile on a GPU). Each trains random
batches of the shape (Adam, sparse cross-entropy); every repeat times each contender in turn,
and the table gives the best repeat, so a noisy neighbour slows one repeat, not one model.
`--fold` decides how fashion-tcn's every-step pass runs its dilated convolutions: as the
backend's default (`layers.FOLD_FROM_STEPS`: folded on TensorFlow, dilated on JAX), `always`
folded into the batch, or `never`; so one run on a new machine (a GPU) says which is faster.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from fashion_tcn import layers
from fashion_tcn.layers import TCN

SHAPES = {
    "bai": {"filters": 25, "batch": 64},
    "wide": {"filters": 64, "batch": 256},
}
KERNEL, DILATIONS, STEPS = 7, [2**i for i in range(8)], 784


def _keras_model(make_tcn: Callable[[], keras.layers.Layer], precision: str) -> keras.Model:
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(precision)
    try:
        inputs = keras.Input((STEPS, 1))
        x = make_tcn()(inputs)
        if len(x.shape) == 3:  # every step came back: classify the last
            x = x[:, -1]
        outputs = keras.layers.Dense(10, activation="softmax", dtype="float32")(x)
        model = keras.Model(inputs, outputs)
    finally:
        keras.config.set_dtype_policy(previous)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def keras_contenders(filters: int, precisions: list[str]) -> dict[str, Callable[[], keras.Model]]:
    ours = lambda: TCN(filters, KERNEL, DILATIONS)  # noqa: E731
    contenders = {f"fashion-tcn {p}": (lambda p=p: _keras_model(ours, p)) for p in precisions}
    # the same layer made to compute every step, as a library without the last-step path does
    every = lambda: TCN(filters, KERNEL, DILATIONS, return_sequences=True)  # noqa: E731
    contenders["fashion-tcn float32, every step"] = lambda: _keras_model(every, "float32")
    try:
        from tcn import TCN as PEER_TCN  # keras-tcn
    except ImportError:
        return contenders

    def peer():
        return PEER_TCN(
            nb_filters=filters,
            kernel_size=KERNEL,
            dilations=DILATIONS,
            padding="causal",
            use_skip_connections=False,
            dropout_rate=0.0,
        )

    for p in precisions:
        contenders[f"keras-tcn {p}"] = lambda p=p: _keras_model(peer, p)
    return contenders


def keras_timer(
    model: keras.Model, batch: int, samples: int, shape: tuple[int, ...] = (STEPS, 1)
) -> Callable[[], float]:
    """A timer of one `fit` over `samples` random inputs of `shape` (samples/s), after a
    warm-up batch that traces."""
    rng = np.random.default_rng(0)
    x = rng.random((samples, *shape), dtype=np.float32)
    y = rng.integers(0, 10, len(x))
    model.fit(x[:batch], y[:batch], batch_size=batch, verbose=0)  # warm-up: tracing

    def run() -> float:
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, verbose=0, shuffle=False)
        return len(x) / (time.perf_counter() - start)

    return run


def torch_timers(filters: int, batch: int, batches: int) -> dict[str, Callable[[], float]]:
    """pytorch-tcn 1.2.x with the same shape, on CUDA when there is one."""
    import torch
    from pytorch_tcn import TCN as TORCH_TCN

    device = "cuda" if torch.cuda.is_available() else "cpu"

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tcn = TORCH_TCN(
                1, [filters] * len(DILATIONS), KERNEL, dilations=DILATIONS, causal=True,
                use_norm=None, dropout=0.0, input_shape="NLC",
            )  # fmt: skip
            self.head = torch.nn.Linear(filters, 10)

        def forward(self, x):
            return self.head(self.tcn(x)[:, -1])

    x = torch.rand(batch, STEPS, 1, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    timers = {}
    variants = [("float32", False, False)]
    if device == "cuda":
        variants.append(("bf16 + torch.compile", True, True))
    for name, bf16, compiled in variants:
        net = Net().to(device)
        step_net = torch.compile(net) if compiled else net
        optimizer = torch.optim.Adam(net.parameters())

        def step(step_net=step_net, optimizer=optimizer, bf16=bf16):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(step_net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        try:
            step()  # warm-up: compilation
        except Exception as error:  # e.g. torch.compile without a working compiler
            print(f"pytorch-tcn {name} ({device}) did not run: {error!r:.120}")
            continue

        def run(step=step) -> float:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(batches):
                step()
            if device == "cuda":
                torch.cuda.synchronize()
            return batch * batches / (time.perf_counter() - start)

        timers[f"pytorch-tcn {name} ({device})"] = run
    return timers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; best kept")
    parser.add_argument("--batches", type=int, default=4, help="timed batches per round")
    parser.add_argument("--torch", action="store_true", help="add pytorch-tcn")
    parser.add_argument(
        "--fold",
        choices=("auto", "always", "never"),
        default="auto",
        help="fashion-tcn's dilated convolutions on 784 steps: the backend's default, folded "
        "into the batch, or the backend's dilated convolution",
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["float32"],
        choices=("float32", "mixed_bfloat16", "mixed_float16"),
        help="Keras dtype policies to run both Keras TCNs under",
    )
    args = parser.parse_args()
    if args.fold != "auto":
        layers.FOLD_FROM_STEPS = STEPS if args.fold == "always" else None
    print(f"Keras {keras.__version__} on {keras.backend.backend()}, fold: {args.fold}")
    print("| shape | batch | contender | parameters | samples/s (best) | vs fashion-tcn float32 |")
    print("|---|---|---|---|---|---|")
    for shape in args.shapes:
        filters, batch = SHAPES[shape]["filters"], SHAPES[shape]["batch"]
        timers, sizes = {}, {}
        for name, build in keras_contenders(filters, args.precisions).items():
            try:
                model = build()
                timers[name] = keras_timer(model, batch, batch * args.batches)
                sizes[name] = model.count_params()
            except Exception as error:  # a peer that cannot build this policy is reported
                print(f"| {shape} | {batch} | {name} | - | did not run: {error!r:.80} | - |")
        if args.torch:
            timers |= torch_timers(filters, batch, args.batches)
        best = dict.fromkeys(timers, 0.0)
        for _ in range(args.repeats):
            for name, run in timers.items():
                best[name] = max(best[name], run())
        base = best.get("fashion-tcn float32") or 1.0
        for name, speed in best.items():
            size = f"{sizes[name]:,}" if name in sizes else "-"
            print(f"| {shape} | {batch} | {name} | {size} | {speed:,.0f} | {speed / base:.2f}x |")


if __name__ == "__main__":
    main()
