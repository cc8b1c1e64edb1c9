"""The one place that knows a run directory's files: it names, reads and writes each of them.

    config.yaml            resolved config (per-mode defaults filled in): rebuilds the model
    data.json              where the data came from (files, checksums)
    permutation.npy        pixel order, `permuted` mode only
    model.keras            best epoch on validation accuracy;  last.keras: last epoch (resume)
    history.csv            one row per epoch (CSVLogger), with epoch time and samples/s
    summary.txt            model.summary()
    metrics.json, confusion_matrix.csv/.png, truth_table.csv, training_curves.png   (evaluate)
    predictions.npz        test labels and class probabilities
    mistakes.npz           the most confident mistakes: images, labels, predictions, confidence
    anytime.csv/.png       TCN only: test accuracy after 10%, 20%, ... of the sequence
    report.html            everything above on one self-contained page
    export/                SavedModel, TFLite and the TFLite stream step

Every write goes through `files.atomic_path`. Keras is imported only to load a model, so the CLI
can check a run directory before paying for it.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from fashion_tcn.config import Config, ConfigError, load_config, save_config
from fashion_tcn.files import atomic_path, write_text

EPOCHS_ENTRY = "fashion_tcn.json"  # in a checkpoint's .keras archive, beside Keras's own files


def mark_epochs(checkpoint: Path, epochs: int) -> None:
    """Record in a freshly saved .keras file how many epochs its weights have trained, so the
    count travels with the weights in one atomic rename (the optimizer's step count does not
    tell: mixed_float16 skips steps whose gradient is not finite)."""
    with zipfile.ZipFile(checkpoint, "a") as archive:
        archive.writestr(EPOCHS_ENTRY, json.dumps({"epochs": epochs}))


def marked_epochs(checkpoint: Path) -> int | None:
    """The epochs `mark_epochs` recorded in a .keras file; None if it has no record."""
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            return int(json.loads(archive.read(EPOCHS_ENTRY))["epochs"])
    except (KeyError, zipfile.BadZipFile, OSError, ValueError):
        return None


class _File:
    """A run's file by name: `RunDir.model_file` is "model.keras", `run.model_file` its path."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, run: RunDir | None, owner: type) -> Path | str:
        return self.name if run is None else run.path / self.name


class RunDir:
    """A run directory: its files' paths (`run.metrics_file`), readers and atomic writers."""

    config_file = _File("config.yaml")
    data_file = _File("data.json")
    permutation_file = _File("permutation.npy")
    model_file = _File("model.keras")
    last_file = _File("last.keras")
    history_file = _File("history.csv")
    summary_file = _File("summary.txt")
    metrics_file = _File("metrics.json")
    confusion_file = _File("confusion_matrix.csv")
    truth_table_file = _File("truth_table.csv")
    anytime_file = _File("anytime.csv")
    predictions_file = _File("predictions.npz")
    mistakes_file = _File("mistakes.npz")
    confusion_plot = _File("confusion_matrix.png")
    curves_plot = _File("training_curves.png")
    anytime_plot = _File("anytime.png")
    calibration_file = _File("calibration.json")
    reliability_plot = _File("reliability.png")
    explain_file = _File("explain.npz")
    explain_dir = _File("explain")
    report_file = _File("report.html")
    export_dir = _File("export")
    savedmodel_export = _File("export/savedmodel")
    tflite_export = _File("export/model.tflite")
    step_export = _File("export/step.tflite")
    onnx_export = _File("export/model.onnx")
    tensorboard_dir = _File("tensorboard")

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def is_empty(self) -> bool:
        return not self.path.exists() or not any(self.path.iterdir())

    def require(self, *files: str) -> RunDir:
        """ConfigError naming the first missing file: "RUN: not a run directory (no NAME)"."""
        for name in files or (RunDir.config_file, RunDir.model_file):
            if not (self.path / name).is_file():
                raise ConfigError(f"{self.path}: not a run directory (no {name})")
        return self

    # reading

    def config(self) -> Config:
        return load_config(self.config_file)

    def model(self, last: bool = False):
        """The best (or `last`) checkpoint; ConfigError naming a damaged file."""
        from fashion_tcn.models import load_model

        return load_model(self.last_file if last else self.model_file)

    def permutation(self) -> np.ndarray | None:
        """The pixel order of a `permuted` run (None for other modes)."""
        return np.load(self.permutation_file) if self.permutation_file.is_file() else None

    def temperature(self, steps: int | None = None) -> float:
        """What the model's logits are divided by for calibrated confidence (1.0 before the
        run was evaluated: then there is none). With `steps`, for a prediction made after that
        many steps of the sequence: the temperature fitted at the latest point at or before it
        (the first point's before it), where evaluation fitted one per point."""
        if not self.calibration_file.is_file():
            return 1.0
        stored = json.loads(self.calibration_file.read_text())
        points = stored.get("anytime")
        if steps is None or not points:
            return float(stored["temperature"])
        earlier = [p for p in points if p["steps"] <= steps] or points[:1]
        return float(earlier[-1]["temperature"])

    def history(self) -> list[dict]:
        if not self.history_file.is_file():
            return []
        with self.history_file.open() as f:
            return list(csv.DictReader(f))

    def metrics(self) -> dict:
        return json.loads(self.metrics_file.read_text())

    def best_val_accuracy(self) -> float | None:
        """The validation accuracy of the epoch saved as model.keras (None before the first)."""
        return max((float(row["val_accuracy"]) for row in self.history()), default=None)

    # writing (atomically)

    def write_config(self, cfg: Config) -> Path:
        return save_config(cfg, self.config_file)

    def write_text(self, path: Path, text: str) -> Path:
        return write_text(path, text)

    def write_json(self, path: Path, value: object) -> Path:
        return write_text(path, json.dumps(value, indent=2) + "\n")

    def write_csv(self, path: Path, rows: list[dict]) -> Path:
        with atomic_path(path) as partial, partial.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return path

    def save_npy(self, path: Path, array: np.ndarray) -> Path:
        with atomic_path(path) as partial:
            np.save(partial, array)
        return path

    def save_npz(self, path: Path, **arrays: np.ndarray) -> Path:
        with atomic_path(path) as partial:
            np.savez_compressed(partial, **arrays)
        return path

    def keep_history(self, epochs: int) -> None:
        """Cut history.csv back to its first `epochs` rows (a resume retrains the rest)."""
        if self.history_file.is_file():
            lines = self.history_file.read_text().splitlines(keepends=True)
            if len(lines) > epochs + 1:
                write_text(self.history_file, "".join(lines[: epochs + 1]))
