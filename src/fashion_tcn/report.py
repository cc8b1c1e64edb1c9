"""Plots for a run directory: confusion matrix heatmap and training curves.

Figures are built on `matplotlib.figure.Figure` directly rather than through pyplot, so no GUI
backend is ever selected and nothing is left in pyplot's global figure registry.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# Beyond this many classes per-cell numbers become unreadable; the colours still tell the story.
_MAX_ANNOTATED_CLASSES = 30


def plot_confusion_matrix(
    cm: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    *,
    normalize: bool = False,
    title: str = "Confusion matrix",
) -> Path:
    """Save a heatmap of `cm` (rows = true, cols = predicted) as a PNG and return its path.

    With `normalize`, each row is divided by its total so cells read as recall fractions;
    a class with no examples keeps a row of zeros instead of NaNs.
    """
    cm = np.asarray(cm)
    num_classes = len(class_names)
    if cm.shape != (num_classes, num_classes):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {num_classes} classes")

    if normalize:
        row_totals = cm.sum(axis=1, keepdims=True)
        values = np.divide(
            cm, row_totals, out=np.zeros(cm.shape, dtype=float), where=row_totals > 0
        )
        colorbar_label, fmt = "fraction of true class", "{:.2f}"
    else:
        values = cm
        colorbar_label, fmt = "count", "{:.0f}"

    size = max(5.0, 0.6 * num_classes + 2.5)
    fig = Figure(figsize=(size + 1.0, size), layout="constrained")
    ax = fig.add_subplot()
    # A fixed lower bound of 0 keeps colours comparable; max(..., 1) avoids a degenerate scale.
    vmax = 1.0 if normalize else max(float(values.max(initial=0)), 1.0)
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, label=colorbar_label)

    ticks = np.arange(num_classes)
    ax.set_xticks(ticks, labels=list(class_names), rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, labels=list(class_names))
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(title)

    if num_classes <= _MAX_ANNOTATED_CLASSES:
        # Dark text on light cells, white on dark cells, split at the middle of the colour scale.
        low, high = image.get_clim()
        threshold = (low + high) / 2.0
        for (row, col), value in np.ndenumerate(values):
            ax.text(
                col,
                row,
                fmt.format(value.item()),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if value > threshold else "black",
            )

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _read_history(history_csv: Path) -> dict[str, np.ndarray]:
    """Columns of a Keras CSVLogger file as float arrays ("NA" and blanks become NaN)."""
    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "epoch" not in rows[0]:
        raise ValueError(f"{history_csv}: no epoch rows to plot (empty or not a CSVLogger file)")

    def to_float(text: str | None) -> float:
        try:
            return float(text) if text else math.nan
        except ValueError:
            return math.nan

    return {name: np.array([to_float(row[name]) for row in rows]) for name in rows[0]}


def _plot_metric(ax: Axes, epochs: np.ndarray, history: dict[str, np.ndarray], metric: str) -> None:
    """Draw the train and (when logged) validation curve of one metric."""
    for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
        if key in history:
            ax.plot(epochs, history[key], marker="o", markersize=3, label=label)
    ax.set_title(metric.capitalize())
    ax.set_xlabel("Epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    else:
        ax.text(0.5, 0.5, f"{metric} not logged", ha="center", va="center", transform=ax.transAxes)


def plot_history(history_csv: Path, path: Path) -> Path:
    """Save loss and accuracy curves from a Keras CSVLogger file as a PNG and return its path.

    Validation columns are optional, so runs trained without a validation split still plot.
    """
    history = _read_history(Path(history_csv))
    # CSVLogger counts epochs from 0; Keras' progress bar (and people) count from 1.
    epochs = history["epoch"] + 1

    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    _plot_metric(loss_ax, epochs, history, "loss")
    _plot_metric(acc_ax, epochs, history, "accuracy")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
