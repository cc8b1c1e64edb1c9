"""Testing a run: predict once, hand the arrays to `metrics`, write the run's tables, arrays,
calibration, explanations and plots; and the metrics as the CLI prints them. Keras is imported
inside `evaluate_run` only, so the report can read these tables without it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fashion_tcn import plots
from fashion_tcn.config import sequence_length
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


def evaluate_run(
    run: RunDir,
    data_dir: str | None = None,
    *,
    splits: Splits | None = None,
    explain_per_class: int = 10,
    other_data: bool = False,
) -> dict:
    """Test the run's best model once; (re)write its metrics, tables, predictions, the most
    confident mistakes, calibration, explanations (class maps over `explain_per_class` test
    images per class) and the plots. Keras is imported here only: the report reads this
    module's tables without it."""
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
    model = run.model()
    permutation = run.permutation()
    predict = explain.predictor(model, cfg.data.sequence, permutation)
    probs = predict(splits.x_test)
    metrics = compute_metrics(splits.y_test, probs, CLASS_NAMES)
    metrics["calibration"] = calibration(splits.y_val, predict(splits.x_val), splits.y_test, probs)
    stored = {
        "temperature": metrics["calibration"]["temperature"],
        "fitted_on": f"validation ({len(splits.y_val)} images)",
    }
    if cfg.model.kind == "tcn":  # causal: the prediction after 10%, 20%, ... of the sequence
        steps = sequence_length(cfg.data.sequence)
        at = [max(1, round(f * steps)) - 1 for f in ANYTIME_FRACTIONS]

        def partial(images: np.ndarray) -> np.ndarray:
            x = model_inputs(model, images, cfg.data.sequence, permutation)
            return np.concatenate(
                [step_predictions(model, x[i : i + 512], at) for i in range(0, len(x), 512)]
            )

        test_at = partial(splits.x_test)
        temperatures, eces = anytime_calibration(
            splits.y_val, partial(splits.x_val), splits.y_test, test_at
        )
        metrics["anytime"] = [
            {**row, **ece}
            for row, ece in zip(
                anytime_accuracy(splits.y_test, test_at, steps, at), eces, strict=True
            )
        ]
        # what `predict --stream` divides the logits by after each number of steps
        stored["anytime"] = [
            {"steps": t + 1, "temperature": temperature}
            for t, temperature in zip(at, temperatures, strict=True)
        ]
    run.write_json(run.calibration_file, stored)
    history = run.history()

    def history_mean(column: str) -> float | None:
        return float(np.mean([float(r[column]) for r in history])) if history else None

    metrics.update(
        run_dir=str(run),
        model=cfg.model.kind,
        sequence=cfg.data.sequence,
        parameters=model.count_params(),
        epochs=len(history),
        mean_epoch_time=history_mean("epoch_time"),
        mean_samples_per_s=history_mean("samples_per_s"),
        receptive_field=model.get_layer("tcn").receptive_field if cfg.model.kind == "tcn" else None,
        test_set=splits.test_set,
        data_fingerprint=splits.provenance["fingerprint"],
        data=data,
    )
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
    explained = explain.class_maps(
        predict, splits.x_test, splits.y_test, len(CLASS_NAMES), explain_per_class
    )
    right = np.flatnonzero(probs.argmax(axis=1) == splits.y_test)[:2]
    examples = np.concatenate([right, worst[:2]])  # two it got right, its two surest mistakes
    explained |= explain.explain(model, splits.x_test[examples], cfg.data.sequence, permutation)
    run.save_npz(run.explain_file, labels=splits.y_test[examples], **explained)
    cm = np.asarray(metrics["confusion_matrix"])
    plots.plot_confusion_matrix(cm, CLASS_NAMES, run.confusion_plot)
    if history:
        plots.plot_history(run.history_file, run.curves_plot)
    if metrics.get("anytime"):
        plots.plot_anytime(metrics["anytime"], run.anytime_plot)
    plots.save(plots.reliability_figure(metrics["calibration"]), run.reliability_plot)
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
