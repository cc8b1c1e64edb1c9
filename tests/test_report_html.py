"""The HTML report: every section, embedded PNGs that decode, real tables, missing files named."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import yaml

from fashion_tcn.data import CLASS_NAMES
from fashion_tcn.evaluate import write_metrics
from fashion_tcn.metrics import calibration, compute_metrics, confident_mistakes
from fashion_tcn.report import build_report, render_report
from fashion_tcn.rundir import RunDir
from fashion_tcn.runview import RUN_FILES, missing_files

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATA_URI = "data:image/png;base64,"
SHA = {
    "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
RUN_SECTIONS = (
    "Training curves",
    "Confusion matrix",
    "Truth table",
    "Per-class accuracy",
    "Calibration",
    "Most confident mistakes",
    "Explanations",
    "Model",
    "Configuration",
    "Data provenance",
)
ANYTIME_SECTION = "Accuracy vs fraction of sequence seen"
NUM_MISTAKES = 6
NUM_EXPLAINED = 2
# training curves, two confusion matrices, per-class bars, reliability diagrams, then one image
# per mistake
RUN_IMAGES = 5 + NUM_MISTAKES
EXPLAIN_IMAGES = 1 + NUM_EXPLAINED  # the class maps, then one figure per example


def make_run(
    run_dir: Path, *, seed: int = 0, anytime: bool = False, explained: bool = False
) -> Path:
    """A complete run directory as `evaluate.evaluate_run` writes it, from random predictions."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True)
    config = {
        "data": {"sequence": "rows", "limit_test": 200, "val_fraction": 0.1},
        "model": {"kind": "tcn", "filters": 64, "dilations": [1, 2, 4, 8], "dropout": 0.2},
        "train": {"epochs": 3, "lr": 0.002, "optimizer": "adam", "clipnorm": None},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    provenance = {
        "train": {
            "images": "/data/train-images-idx3-ubyte.gz",
            "images_sha256": SHA["train_images"],
        },
        "test": {"labels": "/data/t10k-labels-idx1-ubyte.gz", "labels_sha256": SHA["test_labels"]},
    }
    (run_dir / "data.json").write_text(json.dumps(provenance))
    rows = [
        f"{epoch},{0.6 + 0.1 * epoch},{20.0 + epoch},{1.0 - 0.2 * epoch},"
        f"{2000.0 + 10 * epoch},{0.65 + 0.08 * epoch + seed / 100},{0.9 - 0.15 * epoch}"
        for epoch in range(3)
    ]
    (run_dir / "history.csv").write_text(
        "epoch,accuracy,epoch_time,loss,samples_per_s,val_accuracy,val_loss\n"
        + "\n".join(rows)
        + "\n"
    )

    labels = np.arange(200) % 10
    probs = rng.dirichlet(np.ones(10), size=200)
    probs[np.arange(200), labels] += rng.uniform(0.0, 1.5, size=200)  # mostly right
    probs /= probs.sum(axis=1, keepdims=True)
    metrics = compute_metrics(labels, probs, CLASS_NAMES)
    metrics["calibration"] = calibration(labels[:50], probs[:50], labels, probs)
    metrics.update(
        run_dir=str(run_dir),
        model="tcn",
        sequence="rows",
        parameters=95434,
        epochs=3,
        mean_epoch_time=21.0,
        mean_samples_per_s=2010.0,
        receptive_field=61,
        test_set="random 200",
    )
    write_metrics(RunDir(run_dir), metrics)
    (run_dir / "summary.txt").write_text(
        'Model: "tcn_28x28"\n│ tcn (TCN) │ (None, 64) │ 94,784 │\n Total params: 95,434\n'
    )
    worst = confident_mistakes(labels, probs, k=NUM_MISTAKES)
    assert len(worst) == NUM_MISTAKES
    np.savez_compressed(
        run_dir / "mistakes.npz",
        images=rng.integers(0, 256, (NUM_MISTAKES, 28, 28), dtype=np.uint8),
        labels=labels[worst],
        predicted=probs[worst].argmax(axis=1),
        confidence=probs[worst].max(axis=1),
    )
    if explained:
        k = NUM_EXPLAINED
        np.savez_compressed(
            run_dir / "explain.npz",
            class_maps=rng.normal(0, 0.1, (10, 28, 28)),
            class_counts=np.full(10, 10),
            class_images=rng.uniform(0, 255, (10, 28, 28)),
            images=rng.integers(0, 256, (k, 28, 28), dtype=np.uint8),
            labels=labels[:k],
            probabilities=probs[:k],
            predicted=probs[:k].argmax(axis=1),
            attribution=rng.normal(0, 0.1, (k, 28, 28)),
            steps=rng.normal(0, 0.5, (k, 28)),
            trajectory=rng.dirichlet(np.ones(10), size=(k, 28)),
        )
    if anytime:
        fractions = np.linspace(0.1, 1.0, 10)
        (run_dir / "anytime.csv").write_text(
            "fraction,accuracy\n" + "".join(f"{f:.1f},{0.1 + 0.8 * f:.3f}\n" for f in fractions)
        )
    return run_dir


class Page(HTMLParser):
    """What the tests look at: headings, <img> sources, tables (by class) and `.missing` notes."""

    def __init__(self, text: str):
        super().__init__()
        self.headings: dict[str, list[str]] = {"h1": [], "h2": [], "h3": []}
        self.images: list[dict[str, str]] = []
        self.tables: dict[str, dict[str, list[list[str]]]] = {}  # class -> part -> rows of cells
        self.missing: list[str] = []
        self._text: list[str] | None = None  # collecting text of a heading, cell or note
        self._table: dict[str, list[list[str]]] | None = None
        self._part = "tbody"
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "table":
            self._table = self.tables.setdefault(attrs.get("class") or "", {})
        elif tag in ("thead", "tbody", "tfoot"):
            self._part = tag
        elif tag == "tr" and self._table is not None:
            self._table.setdefault(self._part, []).append([])
        elif tag in self.headings or tag in ("td", "th") or "missing" in (attrs.get("class") or ""):
            self._text = []

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        text = "".join(self._text or []).strip()
        if tag in self.headings:
            self.headings[tag].append(text)
        elif tag in ("td", "th") and self._table is not None:
            self._table[self._part][-1].append(text)
        elif tag == "p" and self._text is not None:
            self.missing.append(text)
        elif tag == "table":
            self._table = None
        if tag in (*self.headings, "td", "th", "p"):
            self._text = None


def decode_png(src: str) -> np.ndarray:
    assert src.startswith(DATA_URI)
    png = base64.b64decode(src.removeprefix(DATA_URI), validate=True)
    assert png[:8] == PNG_SIGNATURE
    return matplotlib.image.imread(io.BytesIO(png), format="png")


def assert_images_valid(page: Page, count: int) -> None:
    assert len(page.images) == count
    for attrs in page.images:
        assert attrs.get("alt")
        height, width = decode_png(attrs["src"]).shape[:2]
        assert height >= 28 and width >= 28


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory) -> Path:
    return make_run(
        tmp_path_factory.mktemp("report") / "20250101-tcn-rows", anytime=True, explained=True
    )


@pytest.fixture(scope="module")
def complete_page(complete_run: Path) -> tuple[Path, Page]:
    out = build_report([complete_run])
    return out, Page(out.read_text(encoding="utf-8"))


def test_single_run_defaults_to_report_html_in_the_run(complete_run, complete_page) -> None:
    out, page = complete_page
    assert out == complete_run / "report.html"
    assert page.headings["h1"] == ["fashion-tcn report: 20250101-tcn-rows"]
    assert page.headings["h2"] == ["20250101-tcn-rows"]
    assert page.headings["h3"] == [*RUN_SECTIONS[:5], ANYTIME_SECTION, *RUN_SECTIONS[5:]]
    assert page.missing == []
    assert missing_files(complete_run) == []


def test_every_image_is_an_embedded_png(complete_page) -> None:
    out, page = complete_page
    assert_images_valid(page, RUN_IMAGES + 1 + EXPLAIN_IMAGES)  # + the anytime plot
    text = out.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    assert "<script" not in text


def test_header_shows_model_sequence_accuracy_and_test_set(complete_run, complete_page) -> None:
    _, page = complete_page
    metrics = json.loads((complete_run / "metrics.json").read_text())
    text = (complete_run / "report.html").read_text(encoding="utf-8")
    for value in ("tcn", "rows", f"{metrics['accuracy']:.2%}", f"{metrics['loss']:.4f}"):
        assert value in text
    assert "random 200 (200 examples)" in text
    model = dict(page.tables["kv"]["tbody"][:5])  # the Model table comes before the config
    assert model == {
        "parameters": "95,434",
        "receptive field": "61",
        "epochs": "3",
        "time per epoch": "21.0 s",
        "samples/s": "2,010",
    }


def test_truth_table_has_ten_class_rows_and_two_average_rows(complete_page) -> None:
    _, page = complete_page
    table = page.tables["truth-table"]
    assert table["thead"][0][:2] == ["class", "TP"]
    assert [row[0] for row in table["tbody"]] == list(CLASS_NAMES)
    assert [row[0] for row in table["tfoot"]] == ["macro avg", "weighted avg"]
    assert all(len(row) == 9 for row in table["tbody"] + table["tfoot"])
    assert table["tfoot"][0][-1] == "200"  # support


def test_config_and_data_provenance_are_shown(complete_page) -> None:
    out, _ = complete_page
    text = out.read_text(encoding="utf-8")
    for value in ("0.002", "1, 2, 4, 8", "adam", "null", SHA["train_images"], SHA["test_labels"]):
        assert value in text
    assert "/data/train-images-idx3-ubyte.gz" in text


def test_mistakes_gallery_names_true_and_predicted_classes(complete_run, complete_page) -> None:
    _, page = complete_page
    with np.load(complete_run / "mistakes.npz") as mistakes:
        label, predicted = int(mistakes["labels"][0]), int(mistakes["predicted"][0])
        confidence = float(mistakes["confidence"][0])
    gallery = [attrs for attrs in page.images if attrs.get("alt", "").startswith("true ")]
    assert len(gallery) == NUM_MISTAKES
    assert gallery[0]["alt"] == (
        f"true {CLASS_NAMES[label]} / predicted {CLASS_NAMES[predicted]} ({confidence:.0%})"
    )
    assert decode_png(gallery[0]["src"]).shape[:2] == (28, 28)


def test_several_runs_are_compared_side_by_side(tmp_path: Path) -> None:
    runs = [make_run(tmp_path / "run-a"), make_run(tmp_path / "run-b", seed=1)]
    with pytest.raises(ValueError, match="-o OUT"):
        build_report(runs)
    out = build_report(runs, tmp_path / "reports" / "compare.html")
    page = Page(out.read_text(encoding="utf-8"))
    assert page.headings["h2"] == ["Comparison", "run-a", "run-b"]
    assert page.headings["h3"][0] == "Validation curves"
    comparison = page.tables["comparison"]
    assert comparison["thead"][0][:4] == ["run", "model", "sequence", "accuracy"]
    assert [row[0] for row in comparison["tbody"]] == ["run-a", "run-b"]
    assert [row[6] for row in comparison["tbody"]] == ["95,434", "95,434"]
    overlay = [attrs for attrs in page.images if attrs["alt"].startswith("validation accuracy")]
    assert len(overlay) == 1
    assert_images_valid(page, 1 + 2 * RUN_IMAGES)


def test_run_names_and_text_are_escaped(tmp_path: Path) -> None:
    run = make_run(tmp_path / "<b>&run")
    text = render_report([run])
    assert "&lt;b&gt;&amp;run" in text
    assert "<b>&run" not in text


@pytest.mark.parametrize("name", list(RUN_FILES))
def test_a_missing_file_is_named_and_the_rest_still_renders(tmp_path: Path, name: str) -> None:
    run = make_run(tmp_path / "run")
    (run / name).unlink()
    assert missing_files(run) == [name]
    page = Page(build_report([run]).read_text(encoding="utf-8"))
    assert page.headings["h3"] == list(RUN_SECTIONS)  # every section, with or without content
    assert f"missing files: {name} (details below)" in page.missing
    assert any(note.startswith(f"{name} is missing: ") for note in page.missing)
    images = {
        "history.csv": RUN_IMAGES - 1,
        "metrics.json": RUN_IMAGES - 4,  # no confusion matrices, per-class bars, reliability
        "mistakes.npz": RUN_IMAGES - NUM_MISTAKES,
    }
    assert_images_valid(page, images.get(name, RUN_IMAGES))
    if name == "metrics.json":
        assert "truth-table" not in page.tables
        text = (run / "report.html").read_text(encoding="utf-8")
        assert "tcn" in text and "95,434" in text  # from config.yaml and summary.txt


def test_nothing_but_history_still_renders(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    for name in RUN_FILES:
        if name != "history.csv":
            (run / name).unlink()
    page = Page(build_report([run]).read_text(encoding="utf-8"))
    assert_images_valid(page, 1)
    assert len(missing_files(run)) == len(RUN_FILES) - 1


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("history.csv", b"not a csv logger file\n"),
        ("mistakes.npz", b"PK\x03\x04 truncated"),
        ("metrics.json", b'{"accuracy": 0.9,'),
        ("config.yaml", b"- just\n- a list\n"),
    ],
)
def test_an_unreadable_file_is_named(tmp_path: Path, name: str, content: bytes) -> None:
    run = make_run(tmp_path / "run")
    (run / name).write_bytes(content)
    page = Page(build_report([run]).read_text(encoding="utf-8"))
    assert f"unreadable files: {name} (details below)" in page.missing
    assert any(note.startswith(f"{name} could not be read (") for note in page.missing)
    assert missing_files(run) == []


def test_anytime_section_only_when_the_file_exists(tmp_path: Path) -> None:
    page = Page(render_report([make_run(tmp_path / "run")]))
    assert ANYTIME_SECTION not in page.headings["h3"]


def test_not_a_run_directory_is_a_one_line_value_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "metrics.json"
    not_a_dir.write_text("{}")
    for path in (not_a_dir, tmp_path / "nowhere"):
        with pytest.raises(ValueError, match=r"^.*: not a run directory$"):
            build_report([path])
        with pytest.raises(ValueError, match="not a run directory"):
            missing_files(path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: not a run directory \(none of"):
        build_report([tmp_path / "empty"], tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def test_calibration_and_explanations_are_shown(complete_page) -> None:
    out, page = complete_page
    text = out.read_text(encoding="utf-8")
    assert "Expected calibration error on the test set" in text and "T = " in text
    alts = [attrs["alt"] for attrs in page.images]
    assert any(alt.endswith("reliability diagrams") for alt in alts)
    assert any(alt.endswith("mean occlusion map per class") for alt in alts)
    assert sum("explained" in alt for alt in alts) == NUM_EXPLAINED


def test_a_run_tested_before_calibration_and_explanations_says_so(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    del metrics["calibration"]
    (run / "metrics.json").write_text(json.dumps(metrics))
    text = build_report([run]).read_text(encoding="utf-8")
    assert "tested before calibration existed" in text
    assert "tested before explanations existed" in text


def test_a_damaged_explain_file_is_named(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", explained=True)
    (run / "explain.npz").write_bytes(b"not a zip")
    page = Page(build_report([run]).read_text(encoding="utf-8"))
    assert any(note.startswith("explain.npz could not be read") for note in page.missing)
    assert_images_valid(page, RUN_IMAGES)
