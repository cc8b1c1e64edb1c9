"""The HTML report for one run directory, or a comparison of several.

`build_report` writes one self-contained HTML file: plots are PNGs embedded as base64 data URIs,
styling is a few lines of inline CSS and there is no JavaScript, so the page opens offline, can be
mailed or archived as is. A run directory with files missing still renders everything it can, and
the page names each missing file where its content would have been (`missing_files` lists them for
the CLI).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
import markupsafe
import matplotlib.image
import numpy as np
from matplotlib.figure import Figure

from fashion_tcn.data import CLASS_NAMES
from fashion_tcn.files import write_text
from fashion_tcn.plots import (
    anytime_figure,
    class_accuracy_figure,
    class_maps_figure,
    confusion_figure,
    explanation_figure,
    history_figure,
    overlay_figure,
    reliability_figure,
)
from fashion_tcn.rundir import RunDir
from fashion_tcn.runview import (
    ANYTIME_FILE,
    EXPLAIN_FILE,
    RUN_FILES,
    RunView,
    check_run_dir,
    fmt,
    load_run,
    run_names,
)
from fashion_tcn.runview import facts as run_facts

# Embedded PNGs are rendered at 1.5x and shown at 96 CSS px per inch, so text keeps its point size
# on screen and stays sharp on high-density displays.
_DPI = 144
_CSS_PX_PER_INCH = 96


# ---------------------------------------------------------------------------------------------
# The page: data here, markup in templates/report.html.j2 (Jinja2, autoescaped)

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("fashion_tcn", "templates"),
    autoescape=True,
    trim_blocks=True,
    undefined=jinja2.StrictUndefined,
)
_AVERAGE_ROWS = ("macro avg", "weighted avg")
_EXAMPLE_KEYS = ("images", "probabilities", "predicted", "attribution", "steps", "trajectory")
_TRUTH_KEYS = ("tp", "fp", "fn", "tn", "precision", "recall", "f1", "support")
_COMPARISON_HEADER = (
    "run", "model", "sequence", "accuracy", "loss", "test set", "parameters", "epochs",
    "s/epoch", "samples/s",
)  # fmt: skip


@dataclass
class _Image:
    src: str  # a PNG data URI
    alt: str
    width: int | None = None


def _figure(fig: Figure, alt: str) -> _Image:
    """`fig` as an embedded PNG, displayed at its size in inches."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return _Image(_data_uri(buffer.getvalue()), alt, round(fig.get_figwidth() * _CSS_PX_PER_INCH))


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, image, cmap="gray", vmin=0, vmax=255, format="png")
    return buffer.getvalue()


def _class_names(run: RunView) -> list[str]:
    names = (run.metrics or {}).get("class_names")
    return [str(name) for name in names] if names else list(CLASS_NAMES)


def _truth(run: RunView) -> dict | None:
    rows = (run.metrics or {}).get("truth_table")
    if not rows:
        return None

    def cells(row: dict) -> list[str]:
        return [str(row["class"]), *(fmt(row.get(key)) for key in _TRUTH_KEYS)]

    return {
        "per_class": [cells(row) for row in rows if row["class"] not in _AVERAGE_ROWS],
        "averages": [cells(row) for row in rows if row["class"] in _AVERAGE_ROWS],
    }


def _class_accuracy(run: RunView) -> _Image | None:
    rows = [
        r for r in (run.metrics or {}).get("truth_table", []) if r["class"] not in _AVERAGE_ROWS
    ]
    if not rows:
        return None
    overall = (run.metrics or {}).get("accuracy")
    fig = class_accuracy_figure(
        [row["class"] for row in rows],
        [row["recall"] for row in rows],
        math.nan if overall is None else overall,
    )
    return _figure(fig, f"{run.name}: accuracy per class")


def _calibration(run: RunView) -> dict | None:
    calibration = (run.metrics or {}).get("calibration")
    if not calibration:
        return None
    return {
        "temperature": f"{calibration['temperature']:.2f}",
        "validation": f"{calibration['validation_examples']:,}",
        "ece": fmt(calibration["ece"], "percent"),
        "ece_calibrated": fmt(calibration["ece_calibrated"], "percent"),
        "figure": _figure(reliability_figure(calibration), f"{run.name}: reliability diagrams"),
    }


def _explanations(run: RunView) -> dict | None:
    explained = run.explained
    if explained is None:
        return None
    names = _class_names(run)
    examples = [
        _figure(
            explanation_figure(
                {key: explained[key][i] for key in _EXAMPLE_KEYS if key in explained},
                names,
                int(explained["labels"][i]),
            ),
            f"{run.name}: test image {i + 1} explained",
        )
        for i in range(len(explained["images"]))
    ]
    per_class = int(explained["class_counts"].max(initial=0))
    maps = _figure(class_maps_figure(explained, names), f"{run.name}: mean occlusion map per class")
    return {"per_class": per_class, "maps": maps, "examples": examples}


def _confusion(run: RunView) -> list[_Image]:
    cm = (run.metrics or {}).get("confusion_matrix")
    if cm is None:
        return []
    return [
        _figure(
            confusion_figure(
                cm, _class_names(run), normalize=normalize, title=title, figsize=(5.6, 4.8)
            ),
            f"{run.name}: confusion matrix, {alt}",
        )
        for normalize, title, alt in (
            (False, "Counts", "counts"),
            (True, "Row-normalised (recall)", "row-normalised"),
        )
    ]


def _mistakes(run: RunView) -> list[dict] | None:
    if run.mistakes is None:
        return None
    names = _class_names(run)

    def name(label: int) -> str:
        return names[label] if 0 <= label < len(names) else str(label)

    gallery = []
    arrays = run.mistakes
    for image, label, predicted, confidence in zip(
        arrays["images"], arrays["labels"], arrays["predicted"], arrays["confidence"], strict=True
    ):
        true, guess, sure = name(int(label)), name(int(predicted)), f"{float(confidence):.0%}"
        alt = f"true {true} / predicted {guess} ({sure})"
        gallery.append(
            {"image": _Image(_data_uri(_png(image)), alt), "true": true, "predicted": guess,
             "confidence": sure}
        )  # fmt: skip
    return gallery


def _model_rows(facts: dict) -> list[tuple[str, str]]:
    rows = [
        ("parameters", fmt(facts["parameters"])),
        ("receptive field", fmt(facts["receptive_field"])),
        ("epochs", fmt(facts["epochs"])),
        ("time per epoch", fmt(facts["mean_epoch_time"], "seconds")),
        ("samples/s", fmt(facts["mean_samples_per_s"], "rate")),
    ]
    if facts["receptive_field"] is None and facts["model"] not in (None, "tcn"):
        rows[1] = ("receptive field", f"\N{EM DASH} (not a TCN: {facts['model']})")
    return rows


def _flatten(mapping: dict, prefix: str = "") -> list[tuple[str, object]]:
    items = []
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _config_value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return fmt(value) if isinstance(value, (bool, list)) else str(value)


def _config(run: RunView) -> dict[str, list[tuple[str, str]]] | None:
    if run.config is None:
        return None
    sections: dict[str, list[tuple[str, object]]] = {}
    for key, value in run.config.items():
        if isinstance(value, dict):
            sections[str(key)] = _flatten(value)
        else:
            sections.setdefault("", []).append((str(key), value))
    return {name: [(k, _config_value(v)) for k, v in items] for name, items in sections.items()}


def _provenance(run: RunView) -> list[tuple[str, str, str, str]] | None:
    if run.data is None:
        return None
    rows = []
    for split, files in run.data.items():
        if not isinstance(files, dict):
            rows.append((str(split), "", str(files), ""))
            continue
        for kind, path in files.items():
            if kind.endswith("_sha256") and kind.removesuffix("_sha256") in files:
                continue  # shown beside its file
            rows.append((str(split), str(kind), str(path), str(files.get(f"{kind}_sha256", ""))))
    return rows


def _run_view(run: RunView, anchor: str) -> dict:
    """Everything the template shows of one run, as display strings and images."""
    shown = run_facts(run)
    missing = [name for name, problem in run.problems.items() if problem == "is missing"]
    return {
        "anchor": anchor,
        "name": run.name,
        "resolved": str(run.path.resolve()),
        "problems": run.problems,
        "missing": missing,
        "unreadable": [name for name in run.problems if name not in missing],
        "stats": [
            ("model", fmt(shown["model"])),
            ("sequence", fmt(shown["sequence"])),
            ("test accuracy", fmt(shown["accuracy"], "percent")),
            ("test loss", fmt(shown["loss"])),
            ("test set", fmt(shown["test_set"])),
        ],
        "curves": run.history
        and _figure(history_figure(run.history), f"{run.name}: loss and accuracy per epoch"),
        "confusion": _confusion(run),
        "truth": _truth(run),
        "class_accuracy": _class_accuracy(run),
        "tested": run.metrics is not None,
        "calibration": _calibration(run),
        # written only by runs that measured it
        "show_anytime": run.anytime is not None or ANYTIME_FILE in run.problems,
        "anytime": run.anytime
        and _figure(anytime_figure(run.anytime), f"{run.name}: accuracy vs fraction seen"),
        "mistakes": _mistakes(run),
        "explanations": _explanations(run),
        "explain_problem": run.problems.get(EXPLAIN_FILE),
        "model_rows": _model_rows(shown),
        "summary": None if run.summary is None else run.summary.rstrip(),
        "config": _config(run),
        "provenance": _provenance(run),
    }


def _comparison(runs: Sequence[RunView], anchors: Sequence[str]) -> dict:
    rows = []
    for run, anchor in zip(runs, anchors, strict=True):
        shown = run_facts(run)
        link = markupsafe.Markup('<a href="#{}">{}</a>').format(anchor, run.name)  # escapes both
        rows.append(
            (
                link,
                fmt(shown["model"]),
                fmt(shown["sequence"]),
                fmt(shown["accuracy"], "percent"),
                fmt(shown["loss"]),
                fmt(shown["test_set"]),
                fmt(shown["parameters"]),
                fmt(shown["epochs"]),
                fmt(shown["mean_epoch_time"], "seconds"),
                fmt(shown["mean_samples_per_s"], "rate"),
            )
        )
    histories = {run.name: run.history for run in runs if run.history is not None}
    return {
        "header": _COMPARISON_HEADER,
        "rows": rows,
        "numeric": (False, False, False, True, True, False, True, True, True, True),
        "overlay": histories
        and _figure(overlay_figure(histories), "validation accuracy and loss of every run"),
        "without": [run.name for run in runs if run.history is None],
    }


def render_report(run_dirs: Sequence[Path]) -> str:
    """The HTML page for one run, or a comparison of several followed by each run's section."""
    if not run_dirs:
        raise ValueError("no run directories to report on")
    paths = [check_run_dir(Path(path)) for path in run_dirs]
    runs = [load_run(path, name) for path, name in zip(paths, run_names(paths), strict=True)]
    anchors = [f"run-{i}" for i in range(1, len(runs) + 1)]
    several = len(runs) > 1
    title = f"{len(runs)} runs compared" if several else runs[0].name
    return _TEMPLATES.get_template("report.html.j2").render(
        title=f"fashion-tcn report: {title}",
        comparison=_comparison(runs, anchors) if several else None,
        runs=[_run_view(run, anchor) for run, anchor in zip(runs, anchors, strict=True)],
        consequences=RUN_FILES,
        files=RunDir,
        truth_header=("class", "TP", "FP", "FN", "TN", "precision", "recall", "F1", "support"),
        truth_numeric=(False, *[True] * len(_TRUTH_KEYS)),
    )


def build_report(run_dirs: Sequence[Path], out: Path | None = None) -> Path:
    """Write the self-contained HTML report and return its path.

    One run goes to `run_dir/report.html` unless `out` is given; several runs need `out`.
    Raises ValueError naming a path that is not a run directory.
    """
    run_dirs = [Path(path) for path in run_dirs]
    if out is None:
        if len(run_dirs) != 1:
            raise ValueError("a report on several runs needs an output file (-o OUT)")
        out = RunDir(check_run_dir(run_dirs[0])).report_file
    page = render_report(run_dirs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_text(out, page)
