"""Figures for a run directory: training curves, confusion matrices, per-class and anytime plots.

Built on `matplotlib.figure.Figure` directly rather than through pyplot, so no GUI backend is ever
selected and nothing is left in pyplot's global figure registry. `report.py` embeds the same
figures in its HTML page; `train.py` saves them as PNG files beside a run.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from fashion_tcn.files import atomic_path

# Beyond this many classes per-cell numbers become unreadable; the colours still tell the story.
_MAX_ANNOTATED_CLASSES = 30


def confusion_figure(
    cm: np.ndarray,
    class_names: Sequence[str],
    *,
    normalize: bool,
    title: str,
    figsize: tuple[float, float] | None = None,
) -> Figure:
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

    if figsize is None:
        size = max(5.0, 0.6 * num_classes + 2.5)
        figsize = (size + 1.0, size)
    fig = Figure(figsize=figsize, layout="constrained")
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
    return fig


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
    fig = confusion_figure(cm, class_names, normalize=normalize, title=title)
    return save(fig, path)


def read_columns(path: Path, required: Sequence[str], what: str) -> dict[str, np.ndarray]:
    """Columns of a CSV file as float arrays ("NA" and blanks become NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or any(name not in rows[0] for name in required):
        raise ValueError(f"{path}: no {what} rows (empty, or no {', '.join(required)} columns)")

    def to_float(text: str | None) -> float:
        try:
            return float(text) if text else math.nan
        except ValueError:
            return math.nan

    return {name: np.array([to_float(row[name]) for row in rows]) for name in rows[0]}


def read_history(history_csv: Path) -> dict[str, np.ndarray]:
    """Columns of a Keras CSVLogger file as float arrays ("NA" and blanks become NaN)."""
    history = Path(history_csv)
    try:
        return read_columns(history, ["epoch"], "epoch")
    except ValueError:
        raise ValueError(
            f"{history}: no epoch rows to plot (empty or not a CSVLogger file)"
        ) from None


def plot_metric(ax: Axes, epochs: np.ndarray, history: dict[str, np.ndarray], metric: str) -> None:
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


def history_figure(history: dict[str, np.ndarray]) -> Figure:
    # CSVLogger counts epochs from 0; Keras' progress bar (and people) count from 1.
    epochs = history["epoch"] + 1
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    plot_metric(loss_ax, epochs, history, "loss")
    plot_metric(acc_ax, epochs, history, "accuracy")
    return fig


def plot_history(history_csv: Path, path: Path) -> Path:
    """Save loss and accuracy curves from a Keras CSVLogger file as a PNG and return its path.

    Validation columns are optional, so runs trained without a validation split still plot.
    """
    return save(history_figure(read_history(Path(history_csv))), path)


def overlay_figure(histories: dict[str, dict[str, np.ndarray]]) -> Figure:
    """Validation accuracy and loss of several runs, one line per run (run name -> history)."""
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    for ax, metric in ((acc_ax, "val_accuracy"), (loss_ax, "val_loss")):
        for name, history in histories.items():
            if metric in history:
                # "$" would start matplotlib mathtext inside a run name
                ax.plot(history["epoch"] + 1, history[metric], label=name.replace("$", r"\$"))
        ax.set_title(f"Validation {metric.removeprefix('val_')}")
        ax.set_xlabel("Epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, f"{metric} not logged", ha="center", va="center")
    return fig


def class_accuracy_figure(
    class_names: Sequence[str], recall: Sequence[float], overall: float
) -> Figure:
    """Horizontal bars of per-class accuracy (recall), first class on top."""
    fig = Figure(figsize=(7.5, 0.32 * len(class_names) + 1.4), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(class_names))
    bars = ax.barh(positions, recall, color="#4c78a8")
    ax.bar_label(bars, labels=[f"{value:.1%}" for value in recall], padding=3, fontsize=8)
    title = "Per-class accuracy"
    if math.isfinite(overall):
        ax.axvline(overall, color="#e45756", linestyle="--")
        title += f" (dashed line: overall {overall:.1%})"
    ax.set_yticks(positions, labels=list(class_names))
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.09)  # room for the labels at the end of full bars
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("Accuracy on the class (recall)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def anytime_figure(anytime: dict[str, np.ndarray]) -> Figure:
    fig = Figure(figsize=(6.5, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(anytime["fraction"], anytime["accuracy"], marker="o", markersize=4)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlim(0.0, 1.02)
    ax.set_xlabel("Fraction of the sequence seen")
    ax.set_ylabel("Test accuracy")
    ax.set_title("Accuracy vs fraction of sequence seen")
    ax.grid(alpha=0.3)
    return fig


def plot_anytime(anytime: Sequence[dict], path: Path) -> Path:
    """Save test accuracy vs fraction of the sequence seen (rows with fraction, accuracy)."""
    columns = {
        key: np.array([float(row[key]) for row in anytime]) for key in ("fraction", "accuracy")
    }
    return save(anytime_figure(columns), path)


def reliability_figure(calibration: dict) -> Figure:
    """Reliability diagrams before and after temperature scaling: per confidence bin, the
    accuracy (bars) against the mean confidence (dots); on the diagonal a model is calibrated."""
    fig = Figure(figsize=(8.0, 3.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    panels = (
        ("reliability", "ece", "Model"),
        ("reliability_calibrated", "ece_calibrated", f"T = {calibration['temperature']:.2f}"),
    )
    for ax, (bins_key, ece_key, title) in zip(axes, panels, strict=True):
        rows = calibration[bins_key]
        low = np.array([row["low"] for row in rows])
        width = np.array([row["high"] - row["low"] for row in rows])
        ax.bar(low, [row["accuracy"] for row in rows], width, align="edge", alpha=0.7,
               edgecolor="white", label="accuracy")  # fmt: skip
        ax.plot([row["confidence"] for row in rows], [row["confidence"] for row in rows], "o",
                color="tab:red", markersize=4, label="mean confidence")  # fmt: skip
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel("Confidence")
        ax.set_title(f"{title}: ECE {calibration[ece_key]:.2%}")
    axes[0].set_ylabel("Test accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    return fig


def _overlay(ax: Axes, image: np.ndarray, attribution: np.ndarray, limit: float, title: str):
    """The image in grey under its attribution: red where hiding pixels lowers the class's
    probability, blue where it raises it."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    shown = ax.imshow(attribution, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.65)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return shown


def _limit(attribution: np.ndarray) -> float:
    return max(float(np.abs(attribution).max(initial=0.0)), 1e-6)


def explanation_figure(
    example: dict[str, np.ndarray], class_names: Sequence[str], label: int | None = None
) -> Figure:
    """One image explained (`explain.explain`'s arrays for it): the occlusion map over the
    image, its sum per step and, for a TCN, the probabilities as the steps arrive."""
    predicted = int(example["predicted"])
    steps = np.asarray(example["steps"])
    trajectory = example.get("trajectory")
    panels = 2 if trajectory is None else 3
    # fixed margins: a constrained layout would cost more than the drawing (they are many)
    fig = Figure(figsize=(3.0 + 3.6 * (panels - 1), 3.0))
    axes = fig.subplots(1, panels, width_ratios=[1.0] + [1.3] * (panels - 1))
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.16, top=0.86, wspace=0.45)
    title = f"predicted {class_names[predicted]} ({example['probabilities'][predicted]:.0%})"
    if label is not None:
        title += f"\ntrue {class_names[label]}"
    attribution = example["attribution"]
    shown = _overlay(axes[0], example["images"], attribution, _limit(attribution), title)
    fig.colorbar(shown, ax=axes[0], shrink=0.75, pad=0.03)
    t = np.arange(1, len(steps) + 1)
    axes[1].bar(t, steps, width=1.0, color=np.where(steps >= 0, "tab:red", "tab:blue"))
    axes[1].set_xlabel("Step")
    axes[1].set_ylabel("Probability drop (sum)")
    axes[1].set_title("Which steps drove it (hidden: drop)", fontsize=9)
    if trajectory is not None:
        final = np.argsort(-trajectory[-1])[:2].tolist()
        for c in dict.fromkeys([predicted, *([label] if label is not None else []), *final]):
            axes[2].plot(t, trajectory[:, c], label=class_names[c])
        axes[2].set_ylim(0, 1)
        axes[2].yaxis.set_major_formatter(PercentFormatter(1.0))
        axes[2].set_xlabel("Steps seen")
        axes[2].set_ylabel("Probability")
        axes[2].set_title("As the steps arrive", fontsize=9)
        axes[2].legend(fontsize=7)
        axes[2].grid(alpha=0.3)
    return fig


def class_maps_figure(explained: dict[str, np.ndarray], class_names: Sequence[str]) -> Figure:
    """Per class, the mean occlusion map towards the true class over the class's mean image;
    one colour scale for all, so classes compare."""
    maps, counts = explained["class_maps"], explained["class_counts"]
    fig = Figure(figsize=(11.0, 5.0))
    axes = fig.subplots(2, (len(class_names) + 1) // 2).ravel()
    fig.subplots_adjust(left=0.01, right=0.88, bottom=0.02, top=0.93, wspace=0.05, hspace=0.15)
    limit = _limit(maps)
    for c, ax in enumerate(axes):
        if c >= len(class_names):
            ax.set_axis_off()
            continue
        title = f"{class_names[c]} ({counts[c]})"
        shown = _overlay(ax, explained["class_images"][c], maps[c], limit, title)
    colorbar = fig.add_axes((0.9, 0.1, 0.015, 0.8))
    fig.colorbar(shown, cax=colorbar, label="mean probability drop when hidden")
    return fig


def save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial:
        fig.savefig(partial, dpi=120)
    return path
