"""A run directory read for display, tolerant of missing and damaged files: what the report
shows of a run (`load_run`), the facts in its headers and comparison table, and how values read.

A file that is missing or cannot be read becomes a note in `RunView.problems`, never an error, so
a half-finished or damaged run still renders everything it can.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from fashion_tcn.data import CLASS_NAMES
from fashion_tcn.metrics import TRUTH_TABLE_COLUMNS
from fashion_tcn.plots import read_columns, read_history
from fashion_tcn.rundir import RunDir

# What a report reads from a run directory, and what the page lacks without it.
RUN_FILES: dict[str, str] = {
    RunDir.metrics_file: "no test metrics, confusion matrix or truth table",
    RunDir.history_file: "no training curves",
    RunDir.mistakes_file: "no gallery of mistakes",
    RunDir.summary_file: "no model summary",
    RunDir.config_file: "no configuration",
    RunDir.data_file: "no data provenance",
}
ANYTIME_FILE = RunDir.anytime_file  # optional: accuracy after seeing a fraction of the sequence
EXPLAIN_FILE = RunDir.explain_file  # optional: occlusion maps (runs tested since version 0.3)


# ---------------------------------------------------------------------------------------------
# Reading a run directory


@dataclass
class RunView:
    """What could be read from one run directory; `problems` says what could not, per file."""

    path: Path
    name: str
    config: dict | None = None
    data: dict | None = None
    history: dict[str, np.ndarray] | None = None
    metrics: dict | None = None
    summary: str | None = None
    mistakes: dict[str, np.ndarray] | None = None
    anytime: dict[str, np.ndarray] | None = None
    explained: dict[str, np.ndarray] | None = None
    problems: dict[str, str] = field(default_factory=dict)  # file name -> "is missing", ...


def _read_mapping(text: str, loads: Callable[[str], object]) -> dict:
    value = loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping, got {type(value).__name__}")
    return value


def _read_metrics(path: Path) -> dict:
    """metrics.json, checked enough that every section can draw what it finds."""
    metrics = _read_mapping(path.read_text(), json.loads)
    names = metrics.get("class_names") or CLASS_NAMES
    cm = metrics.get("confusion_matrix")
    if cm is not None and np.shape(cm) != (len(names), len(names)):
        raise ValueError(
            f"confusion_matrix shape {np.shape(cm)} does not match {len(names)} classes"
        )
    for row in metrics.get("truth_table") or []:
        if not isinstance(row, dict) or not set(TRUTH_TABLE_COLUMNS) <= row.keys():
            raise ValueError(f"truth_table rows need the keys {', '.join(TRUTH_TABLE_COLUMNS)}")
    return metrics


def _read_mistakes(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in ("images", "labels", "predicted", "confidence")}
    lengths = {len(array) for array in arrays.values()}
    if arrays["images"].ndim != 3 or len(lengths) != 1:
        raise ValueError("expected images (k, H, W) and k labels, predictions and confidences")
    return arrays


def _read_explained(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    maps, images = arrays["class_maps"], arrays["images"]
    if maps.ndim != 3 or images.ndim != 3 or arrays["attribution"].shape != images.shape:
        raise ValueError("expected class maps (C, H, W) and images with attributions (k, H, W)")
    return arrays


_READERS: dict[str, Callable[[Path], object]] = {
    RunDir.metrics_file: _read_metrics,
    RunDir.history_file: read_history,
    RunDir.mistakes_file: _read_mistakes,
    RunDir.summary_file: lambda path: path.read_text(),
    RunDir.config_file: lambda path: _read_mapping(path.read_text(), yaml.safe_load),
    RunDir.data_file: lambda path: _read_mapping(path.read_text(), json.loads),
    ANYTIME_FILE: lambda path: read_columns(path, ["fraction", "accuracy"], "fraction"),
    EXPLAIN_FILE: _read_explained,
}
_ATTRIBUTES = {
    RunDir.metrics_file: "metrics",
    RunDir.history_file: "history",
    RunDir.mistakes_file: "mistakes",
    RunDir.summary_file: "summary",
    RunDir.config_file: "config",
    RunDir.data_file: "data",
    ANYTIME_FILE: "anytime",
    EXPLAIN_FILE: "explained",
}
_READ_ERRORS = (OSError, ValueError, KeyError, yaml.YAMLError, zipfile.BadZipFile)


def check_run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a run directory")
    if not any((run_dir / name).is_file() for name in RUN_FILES):
        raise ValueError(f"{run_dir}: not a run directory (none of {', '.join(RUN_FILES)})")
    return run_dir


def missing_files(run_dir: Path) -> list[str]:
    """Names of the files a report reads that `run_dir` lacks (empty for a complete run)."""
    run_dir = check_run_dir(run_dir)
    return [name for name in RUN_FILES if not (run_dir / name).is_file()]


def load_run(run_dir: Path, name: str) -> RunView:
    run = RunView(path=run_dir, name=name)
    for filename, read in _READERS.items():
        path = run_dir / filename
        if not path.is_file():
            if filename in RUN_FILES:
                run.problems[filename] = "is missing"
            continue
        try:
            setattr(run, _ATTRIBUTES[filename], read(path))
        except _READ_ERRORS as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            run.problems[filename] = f"could not be read ({reason})"
    return run


def run_names(run_dirs: Sequence[Path]) -> list[str]:
    """Directory names, or the paths as given when two runs share a name."""
    names = [path.resolve().name or str(path) for path in run_dirs]
    if len(set(names)) < len(names):
        return [str(path) for path in run_dirs]
    return names


# ---------------------------------------------------------------------------------------------
# Facts shown in headers and the comparison table, with fallbacks when metrics.json is missing


def facts(run: RunView) -> dict:
    metrics, config, history = run.metrics or {}, run.config or {}, run.history or {}

    def from_config(section: str, key: str):
        value = config.get(section)
        return value.get(key) if isinstance(value, dict) else None

    def history_mean(column: str) -> float | None:
        values = history.get(column, np.array([]))
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else None

    parameters = metrics.get("parameters")  # without metrics.json, summary.txt shows them
    test_set = metrics.get("test_set")
    if metrics.get("num_examples") is not None:
        examples = f"{metrics['num_examples']:,} examples"
        test_set = f"{test_set} ({examples})" if test_set else examples
    return {
        "model": metrics.get("model") or from_config("model", "kind"),
        "sequence": metrics.get("sequence") or from_config("data", "sequence"),
        "accuracy": metrics.get("accuracy"),
        "loss": metrics.get("loss"),
        "test_set": test_set,
        "parameters": parameters,
        "receptive_field": metrics.get("receptive_field"),
        "epochs": metrics.get("epochs", len(history["epoch"]) if "epoch" in history else None),
        "mean_epoch_time": metrics.get("mean_epoch_time", history_mean("epoch_time")),
        "mean_samples_per_s": metrics.get("mean_samples_per_s", history_mean("samples_per_s")),
    }


def fmt(value: object, kind: str = "") -> str:
    """A fact as display text; absent values become an em dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "\N{EM DASH}"
    if kind == "percent":
        return f"{value:.2%}"
    if kind == "seconds":
        return f"{value:.1f} s"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if kind == "rate" else f"{value:.4f}"
    if isinstance(value, list):
        return ", ".join(fmt(item) for item in value)
    return str(value)
