"""Is a TCN's anytime prediction calibrated by the temperature fitted on whole sequences?

    python benchmarks/anytime_calibration.py RUN [--fractions 0.25,0.5,0.75,1]

The temperature `evaluate` stores is fitted on the validation split's predictions after the
whole sequence. `predict --stream` shows predictions after part of it, where the model is less
sure and may be calibrated differently. For each fraction of the sequence this prints the test
set's ECE of the raw probabilities, with the whole-sequence temperature, and with a temperature
fitted on validation at that fraction (both temperatures come from validation only).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from fashion_tcn.metrics import expected_calibration_error, fit_temperature, with_temperature
from fashion_tcn.models import model_inputs, step_predictions
from fashion_tcn.rundir import RunDir
from fashion_tcn.sequences import sequence_shape
from fashion_tcn.splits import load_splits


def anytime(run: RunDir, images: np.ndarray, steps: list[int]) -> np.ndarray:
    """(N, len(steps), 10) probabilities after each of `steps` (0-based), in batches."""
    model, cfg = run.model(), run.config()
    chunks = []
    for start in range(0, len(images), 1000):
        x = model_inputs(model, images[start : start + 1000], cfg.data.sequence, run.permutation())
        chunks.append(step_predictions(model, x, steps))
    return np.concatenate(chunks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=RunDir)
    parser.add_argument("--fractions", default="0.25,0.5,0.75,1")
    args = parser.parse_args(argv)
    cfg = args.run.config()
    fractions = [float(f) for f in args.fractions.split(",")]
    length = sequence_shape(cfg.data.sequence)[0]
    steps = [max(1, round(f * length)) - 1 for f in fractions]
    splits = load_splits(cfg)
    val = anytime(args.run, splits.x_val, steps)
    test = anytime(args.run, splits.x_test, steps)
    whole = fit_temperature(splits.y_val, anytime(args.run, splits.x_val, [length - 1])[:, 0])
    print(f"run {args.run}: whole-sequence temperature {whole:.2f} (fitted on validation)")
    print("| fraction | steps | test accuracy | ECE raw | ECE, whole-seq. T | own T | ECE, own T |")
    print("|---|---|---|---|---|---|---|")
    for i, (fraction, step) in enumerate(zip(fractions, steps, strict=True)):
        own = fit_temperature(splits.y_val, val[:, i])
        probs = test[:, i]
        accuracy = float((probs.argmax(1) == splits.y_test).mean())
        eces = [
            expected_calibration_error(splits.y_test, p)
            for p in (probs, with_temperature(probs, whole), with_temperature(probs, own))
        ]
        print(
            f"| {fraction:.0%} | {step + 1} | {accuracy:.2%} | {eces[0]:.2%} | {eces[1]:.2%} "
            f"| {own:.2f} | {eces[2]:.2%} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
