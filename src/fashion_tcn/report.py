"""The HTML report for one run directory, or a comparison of several.

`build_report` writes one self-contained HTML file: plots are PNGs embedded as base64 data URIs,
styling is a few lines of inline CSS and there is no JavaScript, so the page opens offline, can be
mailed or archived as is. A run directory with files missing still renders everything it can, and
the page names each missing file where its content would have been (`missing_files` lists them for
the CLI).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.image
import numpy as np
import yaml
from matplotlib.figure import Figure

from fashion_tcn.data import CLASS_NAMES
from fashion_tcn.evaluate import TRUTH_TABLE_COLUMNS
from fashion_tcn.files import write_text
from fashion_tcn.plots import (
    anytime_figure,
    class_accuracy_figure,
    confusion_figure,
    history_figure,
    overlay_figure,
    read_columns,
    read_history,
)

# What a report reads from a run directory, and what the page lacks without it.
RUN_FILES: dict[str, str] = {
    "metrics.json": "no test metrics, confusion matrix or truth table",
    "history.csv": "no training curves",
    "mistakes.npz": "no gallery of mistakes",
    "summary.txt": "no model summary",
    "config.yaml": "no configuration",
    "data.json": "no data provenance",
}
ANYTIME_FILE = "anytime.csv"  # optional: accuracy after seeing a fraction of the sequence

# Embedded PNGs are rendered at 1.5x and shown at 96 CSS px per inch, so text keeps its point size
# on screen and stays sharp on high-density displays.
_DPI = 144
_CSS_PX_PER_INCH = 96


def _img(fig: Figure, alt: str) -> str:
    """`fig` as an <img> with an embedded PNG, displayed at its size in inches."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    width = round(fig.get_figwidth() * _CSS_PX_PER_INCH)
    return _img_tag(buffer.getvalue(), alt, f'width="{width}"')


def _img_tag(png: bytes, alt: str, extra: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" {extra}>'


# ---------------------------------------------------------------------------------------------
# Reading a run directory


@dataclass
class _Run:
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


_READERS: dict[str, Callable[[Path], object]] = {
    "metrics.json": _read_metrics,
    "history.csv": read_history,
    "mistakes.npz": _read_mistakes,
    "summary.txt": lambda path: path.read_text(),
    "config.yaml": lambda path: _read_mapping(path.read_text(), yaml.safe_load),
    "data.json": lambda path: _read_mapping(path.read_text(), json.loads),
    ANYTIME_FILE: lambda path: read_columns(path, ["fraction", "accuracy"], "fraction"),
}
_ATTRIBUTES = {
    "metrics.json": "metrics",
    "history.csv": "history",
    "mistakes.npz": "mistakes",
    "summary.txt": "summary",
    "config.yaml": "config",
    "data.json": "data",
    ANYTIME_FILE: "anytime",
}
_READ_ERRORS = (OSError, ValueError, KeyError, yaml.YAMLError, zipfile.BadZipFile)


def _check_run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a run directory")
    if not any((run_dir / name).is_file() for name in RUN_FILES):
        raise ValueError(f"{run_dir}: not a run directory (none of {', '.join(RUN_FILES)})")
    return run_dir


def missing_files(run_dir: Path) -> list[str]:
    """Names of the files a report reads that `run_dir` lacks (empty for a complete run)."""
    run_dir = _check_run_dir(run_dir)
    return [name for name in RUN_FILES if not (run_dir / name).is_file()]


def _load_run(run_dir: Path, name: str) -> _Run:
    run = _Run(path=run_dir, name=name)
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


def _run_names(run_dirs: Sequence[Path]) -> list[str]:
    """Directory names, or the paths as given when two runs share a name."""
    names = [path.resolve().name or str(path) for path in run_dirs]
    if len(set(names)) < len(names):
        return [str(path) for path in run_dirs]
    return names


# ---------------------------------------------------------------------------------------------
# Facts shown in headers and the comparison table, with fallbacks when metrics.json is missing


def _facts(run: _Run) -> dict:
    metrics, config, history = run.metrics or {}, run.config or {}, run.history or {}

    def from_config(section: str, key: str):
        value = config.get(section)
        return value.get(key) if isinstance(value, dict) else None

    def history_mean(column: str) -> float | None:
        values = history.get(column, np.array([]))
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else None

    parameters = metrics.get("parameters")
    if parameters is None and run.summary:
        found = re.search(r"Total params:\s*([\d,]+)", run.summary)
        parameters = int(found.group(1).replace(",", "")) if found else None
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


def _fmt(value: object, kind: str = "") -> str:
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
        return ", ".join(_fmt(item) for item in value)
    return str(value)


# ---------------------------------------------------------------------------------------------
# HTML


_CSS = """
body { font-family: system-ui, "DejaVu Sans", Arial, sans-serif; color: #1f2328; margin: 0;
       line-height: 1.45; background: #fff; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 28px 48px; }
h1 { font-size: 1.7em; margin: 0.6em 0 0.2em; }
h2 { font-size: 1.4em; border-bottom: 2px solid #d0d7de; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.12em; margin: 1.8em 0 0.5em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.4em 0; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; vertical-align: top; }
thead th, table.kv th { background: #f6f8fa; }
table.kv th { font-weight: 500; }
caption { font-weight: 600; text-align: left; padding: 2px 0; }
tbody tr:nth-child(even) { background: #fafbfc; }
tfoot td { font-weight: 600; background: #f6f8fa; }
tfoot tr:first-child td { border-top: 2px solid #8c959f; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.missing { background: #fff8c5; border-left: 4px solid #d4a72c; padding: 6px 12px; }
.path, .muted { color: #59636e; font-size: 0.9em; }
pre { background: #f6f8fa; padding: 10px 14px; overflow-x: auto; font-size: 0.8em;
      line-height: 1.1; font-family: "DejaVu Sans Mono", monospace; }
img { max-width: 100%; height: auto; }
code.sha { font-size: 0.85em; word-break: break-all; }
.stats { display: flex; flex-wrap: wrap; gap: 10px; margin: 0.8em 0; }
.stat { border: 1px solid #d0d7de; border-radius: 6px; padding: 6px 14px; min-width: 7em; }
.stat .label { font-size: 0.72em; color: #59636e; text-transform: uppercase; }
.stat .value { font-size: 1.2em; font-weight: 600; }
.row { display: flex; flex-wrap: wrap; gap: 16px 24px; align-items: flex-start; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: 14px; }
.gallery figure { margin: 0; text-align: center; font-size: 0.78em; line-height: 1.3;
                  white-space: nowrap; }
.gallery img { width: 84px; height: 84px; image-rendering: pixelated; display: block;
               margin: 0 auto 4px; border: 1px solid #d0d7de; }
.gallery .predicted { color: #b42318; }
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    numeric: Sequence[bool] = (),
    css_class: str = "",
    footer: Sequence[Sequence[str]] = (),
    caption: str = "",
) -> str:
    """An HTML table from already escaped cells; `numeric` right-aligns columns."""

    def cells(row: Sequence[str], tag: str) -> str:
        return "".join(
            f'<{tag} class="num">{cell}</{tag}>'
            if i < len(numeric) and numeric[i]
            else f"<{tag}>{cell}</{tag}>"
            for i, cell in enumerate(row)
        )

    parts = [f'<table class="{css_class}">' if css_class else "<table>"]
    if caption:
        parts.append(f"<caption>{caption}</caption>")
    parts.append(f"<thead><tr>{cells(header, 'th')}</tr></thead>")
    parts.append("<tbody>" + "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows) + "</tbody>")
    if footer:
        parts.append(
            "<tfoot>" + "".join(f"<tr>{cells(row, 'td')}</tr>" for row in footer) + "</tfoot>"
        )
    parts.append("</table>")
    return "".join(parts)


def _kv_table(rows: Sequence[tuple[str, str]], *, caption: str = "", numeric: bool = False) -> str:
    """A two-column table of (name, value) rows, escaped here, names as row headers."""
    value_class = ' class="num"' if numeric else ""
    body = "".join(
        f'<tr><th scope="row">{_esc(name)}</th><td{value_class}>{_esc(value)}</td></tr>'
        for name, value in rows
    )
    caption = f"<caption>{_esc(caption)}</caption>" if caption else ""
    return f'<table class="kv">{caption}<tbody>{body}</tbody></table>'


def _note(run: _Run, filename: str, consequence: str) -> str:
    """The visible note for a file that is missing or unreadable ("" when it was read)."""
    problem = run.problems.get(filename)
    if problem is None:
        return ""
    return f'<p class="missing">{_esc(filename)} {_esc(problem)}: {_esc(consequence)}</p>'


def _header(run: _Run, facts: dict) -> str:
    stats = [
        ("model", _fmt(facts["model"])),
        ("sequence", _fmt(facts["sequence"])),
        ("test accuracy", _fmt(facts["accuracy"], "percent")),
        ("test loss", _fmt(facts["loss"])),
        ("test set", _fmt(facts["test_set"])),
    ]
    boxes = "".join(
        f'<div class="stat"><div class="label">{_esc(label)}</div>'
        f'<div class="value">{_esc(value)}</div></div>'
        for label, value in stats
    )
    missing = [name for name, problem in run.problems.items() if problem == "is missing"]
    unreadable = [name for name in run.problems if name not in missing]
    notes = "".join(
        f'<p class="missing">{label}: {_esc(", ".join(names))} (details below)</p>'
        for label, names in (("missing files", missing), ("unreadable files", unreadable))
        if names
    )
    return (
        f"<h2>{_esc(run.name)}</h2>"
        f'<p class="path">{_esc(run.path.resolve())}</p>'
        f'<div class="stats">{boxes}</div>{notes}'
    )


def _curves_section(run: _Run) -> str:
    body = _note(run, "history.csv", RUN_FILES["history.csv"])
    if run.history is not None:
        body += _img(history_figure(run.history), f"{run.name}: loss and accuracy per epoch")
    return f"<h3>Training curves</h3>{body}"


def _class_names(run: _Run) -> list[str]:
    names = (run.metrics or {}).get("class_names")
    return [str(name) for name in names] if names else list(CLASS_NAMES)


def _confusion_section(run: _Run) -> str:
    body = _note(run, "metrics.json", "no confusion matrix")
    cm = (run.metrics or {}).get("confusion_matrix")
    if cm is not None:
        names = _class_names(run)
        figures = [
            confusion_figure(cm, names, normalize=normalize, title=title, figsize=(5.6, 4.8))
            for normalize, title in ((False, "Counts"), (True, "Row-normalised (recall)"))
        ]
        body += (
            '<p class="muted">Rows are the true class, columns the predicted class.</p>'
            '<div class="row">'
            + _img(figures[0], f"{run.name}: confusion matrix, counts")
            + _img(figures[1], f"{run.name}: confusion matrix, row-normalised")
            + "</div>"
        )
    return f"<h3>Confusion matrix</h3>{body}"


_AVERAGE_ROWS = ("macro avg", "weighted avg")
_TRUTH_HEADER = ("class", "TP", "FP", "FN", "TN", "precision", "recall", "F1", "support")


def _truth_section(run: _Run) -> str:
    body = _note(run, "metrics.json", "no truth table")
    rows = (run.metrics or {}).get("truth_table")
    if rows:
        keys = ("tp", "fp", "fn", "tn", "precision", "recall", "f1", "support")

        def cells(row: dict) -> list[str]:
            return [_esc(row["class"]), *(_esc(_fmt(row.get(key))) for key in keys)]

        per_class = [cells(row) for row in rows if row["class"] not in _AVERAGE_ROWS]
        averages = [cells(row) for row in rows if row["class"] in _AVERAGE_ROWS]
        body += _table(
            _TRUTH_HEADER,
            per_class,
            footer=averages,
            numeric=(False, *[True] * len(keys)),
            css_class="truth-table",
        )
    return f"<h3>Truth table</h3>{body}"


def _class_accuracy_section(run: _Run) -> str:
    body = _note(run, "metrics.json", "no per-class accuracy")
    rows = [
        row
        for row in (run.metrics or {}).get("truth_table", [])
        if row["class"] not in _AVERAGE_ROWS
    ]
    if rows:
        overall = (run.metrics or {}).get("accuracy")
        fig = class_accuracy_figure(
            [row["class"] for row in rows],
            [row["recall"] for row in rows],
            math.nan if overall is None else overall,
        )
        body += _img(fig, f"{run.name}: accuracy per class")
    return f"<h3>Per-class accuracy</h3>{body}"


def _anytime_section(run: _Run) -> str:
    if run.anytime is None and ANYTIME_FILE not in run.problems:
        return ""  # written only by runs that measured it
    body = _note(run, ANYTIME_FILE, "no accuracy vs fraction of sequence seen")
    if run.anytime is not None:
        body += _img(anytime_figure(run.anytime), f"{run.name}: accuracy vs fraction seen")
    return f"<h3>Accuracy vs fraction of sequence seen</h3>{body}"


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, image, cmap="gray", vmin=0, vmax=255, format="png")
    return buffer.getvalue()


def _mistakes_section(run: _Run) -> str:
    body = _note(run, "mistakes.npz", RUN_FILES["mistakes.npz"])
    if run.mistakes is not None:
        names = _class_names(run)

        def name(label: int) -> str:
            return names[label] if 0 <= label < len(names) else str(label)

        figures = []
        arrays = run.mistakes
        for image, label, predicted, confidence in zip(
            arrays["images"],
            arrays["labels"],
            arrays["predicted"],
            arrays["confidence"],
            strict=True,
        ):
            true_name, predicted_name = name(int(label)), name(int(predicted))
            caption = f"true {true_name} / predicted {predicted_name} ({float(confidence):.0%})"
            figures.append(
                f"<figure>{_img_tag(_png(image), caption)}<figcaption>"
                f"true {_esc(true_name)}<br><span class='predicted'>predicted "
                f"{_esc(predicted_name)} ({float(confidence):.0%})</span></figcaption></figure>"
            )
        if figures:
            body += (
                f'<p class="muted">The {len(figures)} test images the model got wrong with the '
                "highest confidence, most confident first.</p>"
                f'<div class="gallery">{"".join(figures)}</div>'
            )
        else:
            body += "<p>No mistakes on the test set.</p>"
    return f"<h3>Most confident mistakes</h3>{body}"


def _model_section(run: _Run, facts: dict) -> str:
    rows = [
        ("parameters", _fmt(facts["parameters"])),
        ("receptive field", _fmt(facts["receptive_field"])),
        ("epochs", _fmt(facts["epochs"])),
        ("time per epoch", _fmt(facts["mean_epoch_time"], "seconds")),
        ("samples/s", _fmt(facts["mean_samples_per_s"], "rate")),
    ]
    if facts["receptive_field"] is None and facts["model"] not in (None, "tcn"):
        rows[1] = ("receptive field", f"\N{EM DASH} (not a TCN: {facts['model']})")
    body = _kv_table(rows, numeric=True) + _note(run, "summary.txt", RUN_FILES["summary.txt"])
    if run.summary is not None:
        body += f"<pre>{_esc(run.summary.rstrip())}</pre>"
    return f"<h3>Model</h3>{body}"


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
    return _fmt(value) if isinstance(value, (bool, list)) else str(value)


def _config_section(run: _Run) -> str:
    body = _note(run, "config.yaml", RUN_FILES["config.yaml"])
    if run.config is not None:
        sections: dict[str, list[tuple[str, object]]] = {}
        for key, value in run.config.items():
            if isinstance(value, dict):
                sections[str(key)] = _flatten(value)
            else:
                sections.setdefault("", []).append((str(key), value))
        tables = [
            _kv_table([(key, _config_value(value)) for key, value in items], caption=section)
            for section, items in sections.items()
        ]
        body += f'<div class="row config">{"".join(tables)}</div>'
    return f"<h3>Configuration</h3>{body}"


def _provenance_section(run: _Run) -> str:
    body = _note(run, "data.json", RUN_FILES["data.json"])
    if run.data is not None:
        rows = []
        for split, files in run.data.items():
            if not isinstance(files, dict):
                rows.append((_esc(split), "", _esc(files), ""))
                continue
            for kind, path in files.items():
                if kind.endswith("_sha256") and kind.removesuffix("_sha256") in files:
                    continue  # shown beside its file
                sha = files.get(f"{kind}_sha256", "")
                rows.append(
                    (_esc(split), _esc(kind), _esc(path), f'<code class="sha">{_esc(sha)}</code>')
                )
        body += _table(("split", "kind", "file", "SHA-256 (decompressed)"), rows)
    return f"<h3>Data provenance</h3>{body}"


def _run_section(run: _Run, anchor: str) -> str:
    facts = _facts(run)
    parts = [
        _header(run, facts),
        _curves_section(run),
        _confusion_section(run),
        _truth_section(run),
        _class_accuracy_section(run),
        _anytime_section(run),
        _mistakes_section(run),
        _model_section(run, facts),
        _config_section(run),
        _provenance_section(run),
    ]
    return f'<section class="run" id="{anchor}">{"".join(parts)}</section>'


def _comparison_section(runs: Sequence[_Run], anchors: Sequence[str]) -> str:
    header = (
        "run",
        "model",
        "sequence",
        "accuracy",
        "loss",
        "test set",
        "parameters",
        "epochs",
        "s/epoch",
        "samples/s",
    )
    rows = []
    for run, anchor in zip(runs, anchors, strict=True):
        facts = _facts(run)
        rows.append(
            (
                f'<a href="#{anchor}">{_esc(run.name)}</a>',
                _esc(_fmt(facts["model"])),
                _esc(_fmt(facts["sequence"])),
                _esc(_fmt(facts["accuracy"], "percent")),
                _esc(_fmt(facts["loss"])),
                _esc(_fmt(facts["test_set"])),
                _esc(_fmt(facts["parameters"])),
                _esc(_fmt(facts["epochs"])),
                _esc(_fmt(facts["mean_epoch_time"], "seconds")),
                _esc(_fmt(facts["mean_samples_per_s"], "rate")),
            )
        )
    numeric = (False, False, False, True, True, False, True, True, True, True)
    body = _table(header, rows, numeric=numeric, css_class="comparison")
    histories = {run.name: run.history for run in runs if run.history is not None}
    if histories:
        body += "<h3>Validation curves</h3>" + _img(
            overlay_figure(histories), "validation accuracy and loss of every run"
        )
    without = [run.name for run in runs if run.history is None]
    if without:
        body += (
            f'<p class="missing">history.csv is missing or unreadable for '
            f"{_esc(', '.join(without))}: not in the validation curves</p>"
        )
    return f"<h2>Comparison</h2>{body}"


def render_report(run_dirs: Sequence[Path]) -> str:
    """The HTML page for one run, or a comparison of several followed by each run's section."""
    if not run_dirs:
        raise ValueError("no run directories to report on")
    paths = [_check_run_dir(Path(path)) for path in run_dirs]
    runs = [_load_run(path, name) for path, name in zip(paths, _run_names(paths), strict=True)]
    anchors = [f"run-{i}" for i in range(1, len(runs) + 1)]
    if len(runs) == 1:
        title = f"fashion-tcn report: {runs[0].name}"
        body = _run_section(runs[0], anchors[0])
    else:
        title = f"fashion-tcn report: {len(runs)} runs compared"
        body = _comparison_section(runs, anchors) + "".join(
            _run_section(run, anchor) for run, anchor in zip(runs, anchors, strict=True)
        )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><main><h1>{_esc(title)}</h1>{body}</main></body></html>\n"
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
        out = _check_run_dir(run_dirs[0]) / "report.html"
    page = render_report(run_dirs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_text(out, page)
