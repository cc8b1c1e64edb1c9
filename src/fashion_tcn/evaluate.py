"""Testing a run, in steps `evaluate_run` calls in order: `predict_once` predicts once (Keras is
imported there only, so the report reads this module's tables without it), `measure` turns the
arrays into numbers (`metrics`), `write_artifacts` writes the run's tables, arrays, calibration,
explanations and plots. And the metrics as the CLI prints them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashion_tcn import plots
from fashion_tcn.config import Config, sequence_length
from fashion_tcn.data import CLASS_NAMES
from fashion_tcn.metrics import (
    ANYTIME_FRACTIONS,
    COUNT_COLUMNS,
    RATE_COLUMNS,
    TRUTH_TABLE_COLUMNS,
    anytime_accuracy,
    anytime_calibration,
    calibration,
    compute_metrics,
    confident_mistakes,
)
from fashion_tcn.rundir import RunDir
from fashion_tcn.splits import Splits, check_same_data, load_splits


def write_metrics(run: RunDir, metrics: dict) -> list[Path]:
    """Write metrics.json, confusion_matrix.csv, truth_table.csv and anytime.csv."""
    run.path.mkdir(parents=True, exist_ok=True)
    class_names = metrics["class_names"]
    cm = np.asarray(metrics["confusion_matrix"], dtype=np.int64).tolist()
    confusion_rows = [
        {"true\\pred": name, **dict(zip(class_names, counts, strict=True))}
        for name, counts in zip(class_names, cm, strict=True)
    ]
    truth = [
        {**row, **{key: f"{row[key]:.4f}" for key in RATE_COLUMNS}}
        for row in metrics["truth_table"]
    ]
    written = [
        run.write_json(run.metrics_file, metrics),
        run.write_csv(run.confusion_file, confusion_rows),
        run.write_csv(run.truth_table_file, truth),
    ]
    if metrics.get("anytime"):
        written.append(run.write_csv(run.anytime_file, metrics["anytime"]))
    return written


@dataclass
class Tested:
    """A run's best model tested once: the arrays every later step reads (nothing predicts
    twice). `at`, `test_at`, `val_at`: a TCN's predictions after 10%, 20%, ... of the
    sequence (steps `at`, 0-based); None for the other models."""

    cfg: Config
    splits: Splits
    model: Any
    permutation: np.ndarray | None
    predict: Callable[[np.ndarray], np.ndarray]
    probs: np.ndarray  # (N_test, 10)
    val_probs: np.ndarray  # (N_val, 10)
    at: list[int] | None = None
    test_at: np.ndarray | None = None  # (N_test, len(at), 10)
    val_at: np.ndarray | None = None


def predict_once(
    run: RunDir, data_dir: str | None, splits: Splits | None, other_data: bool
) -> tuple[Tested, str]:
    """Load the run's best model and its data (the data it was trained on, unless
    `other_data`), predict the test and validation images once; and what the data is."""
    from fashion_tcn import explain
    from fashion_tcn.models import model_inputs, step_predictions

    run.require()
    cfg = run.config()
    if data_dir is not None:
        cfg.data.data_dir = data_dir
    if splits is None:
        splits = load_splits(cfg)
    recorded = json.loads(run.data_file.read_text()) if run.data_file.is_file() else {}
    data = {
        None: "not recorded with the run",
        splits.provenance["fingerprint"]: "as trained",
    }.get(recorded.get("fingerprint"), "other than the run was trained on (--other-data)")
    if not other_data:
        check_same_data(recorded, splits, f"{run}: evaluate (--other-data to test on it anyway)")
    model, permutation = run.model(), run.permutation()
    predict = explain.predictor(model, cfg.data.sequence, permutation)
    tested = Tested(
        cfg, splits, model, permutation, predict, predict(splits.x_test), predict(splits.x_val)
    )
    if cfg.model.kind == "tcn":  # causal: the prediction after 10%, 20%, ... of the sequence
        steps = sequence_length(cfg.data.sequence)
        tested.at = [max(1, round(f * steps)) - 1 for f in ANYTIME_FRACTIONS]

        def partial(images: np.ndarray) -> np.ndarray:
            x = model_inputs(model, images, cfg.data.sequence, permutation)
            return np.concatenate(
                [step_predictions(model, x[i : i + 512], tested.at) for i in range(0, len(x), 512)]
            )

        tested.test_at, tested.val_at = partial(splits.x_test), partial(splits.x_val)
    return tested, data


def measure(tested: Tested) -> tuple[dict, dict]:
    """Arrays in, numbers out: the metrics, and the calibration `predict` applies (the whole
    sequence's temperature and, for a TCN, one per tenth of it)."""
    splits = tested.splits
    metrics = compute_metrics(splits.y_test, tested.probs, CLASS_NAMES)
    metrics["calibration"] = calibration(
        splits.y_val, tested.val_probs, splits.y_test, tested.probs
    )
    stored = {
        "temperature": metrics["calibration"]["temperature"],
        "fitted_on": f"validation ({len(splits.y_val)} images)",
    }
    if tested.at is not None:
        steps = sequence_length(tested.cfg.data.sequence)
        temperatures, eces = anytime_calibration(
            splits.y_val, tested.val_at, splits.y_test, tested.test_at
        )
        accuracies = anytime_accuracy(splits.y_test, tested.test_at, steps, tested.at)
        metrics["anytime"] = [{**row, **ece} for row, ece in zip(accuracies, eces, strict=True)]
        # what `predict --stream` divides the logits by after each number of steps
        stored["anytime"] = [
            {"steps": t + 1, "temperature": temperature}
            for t, temperature in zip(tested.at, temperatures, strict=True)
        ]
    return metrics, stored


def describe(run: RunDir, tested: Tested, data: str) -> dict:
    """What the metrics say of the run beside the numbers: model, size, timings, data."""
    history = run.history()

    def history_mean(column: str) -> float | None:
        return float(np.mean([float(r[column]) for r in history])) if history else None

    tcn = tested.cfg.model.kind == "tcn"
    return dict(
        run_dir=str(run),
        model=tested.cfg.model.kind,
        sequence=tested.cfg.data.sequence,
        parameters=tested.model.count_params(),
        epochs=len(history),
        mean_epoch_time=history_mean("epoch_time"),
        mean_samples_per_s=history_mean("samples_per_s"),
        receptive_field=tested.model.get_layer("tcn").receptive_field if tcn else None,
        test_set=tested.splits.test_set,
        data_fingerprint=tested.splits.provenance["fingerprint"],
        data=data,
    )


def explain_run(tested: Tested, worst: np.ndarray, per_class: int) -> tuple[dict, np.ndarray]:
    """Class maps over `per_class` test images a class, and the explanations of two images the
    model got right and its two surest mistakes (`worst`); with those images' indices."""
    from fashion_tcn import explain

    splits = tested.splits
    explained = explain.class_maps(
        tested.predict, splits.x_test, splits.y_test, len(CLASS_NAMES), per_class
    )
    right = np.flatnonzero(tested.probs.argmax(axis=1) == splits.y_test)[:2]
    examples = np.concatenate([right, worst[:2]])
    explained |= explain.explain(
        tested.model, splits.x_test[examples], tested.cfg.data.sequence, tested.permutation
    )
    return explained, examples


def write_artifacts(run: RunDir, tested: Tested, metrics: dict, stored: dict, per_class: int):
    """The run's files: calibration, metrics and tables, predictions, the most confident
    mistakes, explanations and the plots."""
    splits, probs = tested.splits, tested.probs
    run.write_json(run.calibration_file, stored)
    write_metrics(run, metrics)
    run.save_npz(run.predictions_file, labels=splits.y_test, probs=probs)
    worst = confident_mistakes(splits.y_test, probs)
    run.save_npz(
        run.mistakes_file,
        images=splits.x_test[worst],
        labels=splits.y_test[worst],
        predicted=probs[worst].argmax(axis=1),
        confidence=probs[worst].max(axis=1),
    )
    explained, examples = explain_run(tested, worst, per_class)
    run.save_npz(run.explain_file, labels=splits.y_test[examples], **explained)
    plots.plot_confusion_matrix(
        np.asarray(metrics["confusion_matrix"]), CLASS_NAMES, run.confusion_plot
    )
    if run.history():
        plots.plot_history(run.history_file, run.curves_plot)
    if metrics.get("anytime"):
        plots.plot_anytime(metrics["anytime"], run.anytime_plot)
    plots.save(plots.reliability_figure(metrics["calibration"]), run.reliability_plot)


def evaluate_run(
    run: RunDir,
    data_dir: str | None = None,
    *,
    splits: Splits | None = None,
    explain_per_class: int = 10,
    other_data: bool = False,
) -> dict:
    """Test the run's best model once and (re)write what it says: metrics, tables,
    predictions, the most confident mistakes, calibration, explanations (class maps over
    `explain_per_class` test images per class) and the plots."""
    tested, data = predict_once(run, data_dir, splits, other_data)
    metrics, stored = measure(tested)
    metrics.update(describe(run, tested, data))
    write_artifacts(run, tested, metrics, stored, explain_per_class)
    return metrics


def _short_name(name: str, width: int = 10) -> str:
    """A label that fits a matrix column: the name, its first word ("T-shirt/top" -> "T-shirt"),
    or a truncation."""
    if len(name) <= width:
        return name
    head = re.split(r"[/ ]", name, maxsplit=1)[0]
    return head if 0 < len(head) <= width else name[:width]


def _format_confusion(cm: np.ndarray, class_names: Sequence[str]) -> list[str]:
    """Confusion matrix lines with short class names as labels and right-aligned counts."""
    labels = [_short_name(name) for name in class_names]
    label_width = max(len("true\\pred"), *(len(label) for label in labels))
    widths = [max(len(label), len(str(cm[:, j].max(initial=0)))) for j, label in enumerate(labels)]
    header = "true\\pred".ljust(label_width) + "".join(
        " " + label.rjust(w) for label, w in zip(labels, widths, strict=True)
    )
    lines = [header]
    for label, counts in zip(labels, cm.tolist(), strict=True):
        cells = "".join(" " + str(c).rjust(w) for c, w in zip(counts, widths, strict=True))
        lines.append(label.ljust(label_width) + cells)
    return lines


def _format_truth_table(rows: list[dict]) -> list[str]:
    """Truth table lines with aligned columns and a rule before the summary rows."""
    name_width = max(len("class"), *(len(row["class"]) for row in rows))
    count_widths = {
        key: max(len(key), *(len(str(row[key])) for row in rows)) for key in COUNT_COLUMNS
    }
    rate_width = 9  # fits "precision" and "0.1234"

    def line(cells: dict) -> str:
        parts = [str(cells["class"]).ljust(name_width)]
        for key in TRUTH_TABLE_COLUMNS[1:]:
            width = count_widths.get(key, rate_width)
            value = cells[key]
            parts.append((f"{value:.4f}" if isinstance(value, float) else str(value)).rjust(width))
        return "  ".join(parts)

    header = line({key: key for key in TRUTH_TABLE_COLUMNS})
    per_class, summary = rows[:-2], rows[-2:]  # truth_table ends with macro and weighted avg
    return [header, *map(line, per_class), "-" * len(header), *map(line, summary)]


def format_metrics(metrics: dict) -> str:
    """Plain-text summary for a terminal: headline numbers, confusion matrix and truth table."""
    cm = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
    accuracy = metrics["accuracy"]
    headline = (
        f"accuracy {accuracy:.4f} ({accuracy:.2%})   loss {metrics['loss']:.4f}   "
        f"examples {metrics['num_examples']}"
    )
    calibration = metrics.get("calibration")
    if calibration:
        headline += (
            f"   ECE {calibration['ece']:.2%} ({calibration['ece_calibrated']:.2%} with "
            f"temperature {calibration['temperature']:.2f})"
        )
    lines = [
        headline,
        "",
        "Confusion matrix (rows = true, columns = predicted)",
        *_format_confusion(cm, metrics["class_names"]),
        "",
        "Truth table",
        *_format_truth_table(metrics["truth_table"]),
    ]
    return "\n".join(lines)
