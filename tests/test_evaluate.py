"""Metrics against a hand-computed example, and the files a run directory gets."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from fashion_tcn.evaluate import format_metrics, write_metrics
from fashion_tcn.metrics import calibration, compute_metrics, confusion, truth_table
from fashion_tcn.rundir import RunDir

NAMES = ("cat", "dog", "bird")
FASHION_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# 8 examples, 3 classes. Each row's argmax is the prediction; the comment gives p(true class).
Y_TRUE = np.array([0, 0, 0, 1, 1, 1, 2, 2])
PROBS = np.array(
    [
        [0.80, 0.10, 0.10],  # true 0, pred 0, p=0.8
        [0.60, 0.30, 0.10],  # true 0, pred 0, p=0.6
        [0.50, 0.25, 0.25],  # true 0, pred 0, p=0.5
        [0.20, 0.70, 0.10],  # true 1, pred 1, p=0.7
        [0.50, 0.40, 0.10],  # true 1, pred 0, p=0.4
        [0.10, 0.30, 0.60],  # true 1, pred 2, p=0.3
        [0.70, 0.10, 0.20],  # true 2, pred 0, p=0.2
        [0.25, 0.25, 0.50],  # true 2, pred 2, p=0.5
    ]
)
Y_PRED = PROBS.argmax(axis=1)
# rows = true, cols = predicted
EXPECTED_CM = [[3, 0, 0], [1, 1, 1], [1, 0, 1]]
# By hand from EXPECTED_CM (tp = diagonal, fp = column - tp, fn = row - tp, tn = 8 - the rest):
#   cat:  tp 3 fp 2 fn 0 tn 3  precision 3/5  recall 3/3  f1 2*3/(6+2+0) = 3/4
#   dog:  tp 1 fp 0 fn 2 tn 5  precision 1/1  recall 1/3  f1 2*1/(2+0+2) = 1/2
#   bird: tp 1 fp 1 fn 1 tn 5  precision 1/2  recall 1/2  f1 2*1/(2+1+1) = 1/2
EXPECTED_ROWS = [
    ("cat", 3, 2, 0, 3, 0.6, 1.0, 0.75, 3),
    ("dog", 1, 0, 2, 5, 1.0, 1 / 3, 0.5, 3),
    ("bird", 1, 1, 1, 5, 0.5, 0.5, 0.5, 2),
    # macro: plain means; weighted: weighted by support 3, 3, 2 over 8
    ("macro avg", 5, 3, 3, 13, (0.6 + 1 + 0.5) / 3, (1 + 1 / 3 + 0.5) / 3, 1.75 / 3, 8),
    ("weighted avg", 5, 3, 3, 13, 5.8 / 8, 5 / 8, 4.75 / 8, 8),
]
KEYS = ("class", "tp", "fp", "fn", "tn", "precision", "recall", "f1", "support")


def test_confusion_rows_are_true_cols_are_predicted() -> None:
    cm = confusion(Y_TRUE, Y_PRED, 3)
    assert cm.dtype == np.int64
    assert cm.tolist() == EXPECTED_CM


def test_confusion_rejects_out_of_range_labels() -> None:
    with pytest.raises(ValueError, match="y_pred"):
        confusion(np.array([0, 1]), np.array([0, 3]), 3)


def test_truth_table_matches_hand_computation() -> None:
    rows = truth_table(np.array(EXPECTED_CM), NAMES)
    assert len(rows) == len(EXPECTED_ROWS)
    for row, expected in zip(rows, EXPECTED_ROWS, strict=True):
        assert list(row) == list(KEYS)
        name, tp, fp, fn, tn, precision, recall, f1, support = expected
        assert row["class"] == name
        assert (row["tp"], row["fp"], row["fn"], row["tn"], row["support"]) == (
            tp,
            fp,
            fn,
            tn,
            support,
        )
        assert all(type(row[key]) is int for key in ("tp", "fp", "fn", "tn", "support"))
        assert all(type(row[key]) is float for key in ("precision", "recall", "f1"))
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(f1)


def test_truth_table_agrees_with_sklearn() -> None:
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 10, 500), rng.integers(0, 9, 500)  # class 9 never predicted
    rows = truth_table(confusion(y_true, y_pred, 10), FASHION_NAMES)
    for average, row in ((None, rows[:10]), ("macro", rows[10]), ("weighted", rows[11])):
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=np.arange(10), average=average, zero_division=0.0
        )
        got = row if average is None else [row]
        np.testing.assert_allclose([r["precision"] for r in got], np.atleast_1d(precision))
        np.testing.assert_allclose([r["recall"] for r in got], np.atleast_1d(recall))
        np.testing.assert_allclose([r["f1"] for r in got], np.atleast_1d(f1))


def test_never_predicted_and_absent_classes_give_zero_without_warnings() -> None:
    # "dog" is never predicted; "bird" is neither present nor predicted.
    y_true = np.array([0, 1, 1])
    probs = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.5, 0.4, 0.1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = compute_metrics(y_true, probs, NAMES)
    cat, dog, bird, macro, weighted = metrics["truth_table"]
    assert (cat["precision"], cat["recall"]) == (pytest.approx(1 / 3), 1.0)
    assert (dog["tp"], dog["fp"], dog["fn"], dog["tn"]) == (0, 0, 2, 1)
    assert (dog["precision"], dog["recall"], dog["f1"]) == (0.0, 0.0, 0.0)
    assert (bird["precision"], bird["recall"], bird["f1"], bird["support"]) == (0.0, 0.0, 0.0, 0)
    assert macro["f1"] == pytest.approx(0.5 / 3)  # cat's f1 = 2*1/(2+2+0) = 0.5
    assert weighted["f1"] == pytest.approx(0.5 / 3)  # supports 1, 2, 0


def test_accuracy_and_loss_match_hand_computation() -> None:
    metrics = compute_metrics(Y_TRUE, PROBS, NAMES)
    assert metrics["accuracy"] == pytest.approx(5 / 8)
    p_true = 0.8 * 0.6 * 0.5 * 0.7 * 0.4 * 0.3 * 0.2 * 0.5
    assert metrics["loss"] == pytest.approx(-math.log(p_true) / 8)
    assert metrics["num_examples"] == 8
    assert metrics["confusion_matrix"] == EXPECTED_CM
    assert metrics["class_names"] == list(NAMES)
    json.dumps(metrics)  # plain Python types only


def test_loss_clips_zero_probabilities() -> None:
    metrics = compute_metrics(np.array([1]), np.array([[1.0, 0.0]]), ("a", "b"))
    assert metrics["loss"] == pytest.approx(-math.log(1e-7))


@pytest.mark.parametrize(
    ("y_true", "probs", "match"),
    [
        (Y_TRUE, np.where(np.eye(8, 3) > 0, np.nan, PROBS), "NaN"),
        (Y_TRUE[:-1], PROBS, "y_true"),
        (Y_TRUE, PROBS[:, :2], "probs"),
        (Y_TRUE.astype(float), PROBS, "integer"),
        (np.array([0, 5]), PROBS[:2], "y_true"),
    ],
)
def test_compute_metrics_rejects_bad_input(
    y_true: np.ndarray, probs: np.ndarray, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        compute_metrics(y_true, probs, NAMES)


def test_write_metrics_round_trips(tmp_path: Path) -> None:
    metrics = compute_metrics(Y_TRUE, PROBS, NAMES)
    paths = write_metrics(RunDir(tmp_path / "run"), metrics)
    names = {path.name for path in paths}
    assert names == {
        "metrics.json",
        "confusion_matrix.csv",
        "truth_table.csv",
    }
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths)

    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics

    with open(tmp_path / "run" / "confusion_matrix.csv", newline="") as f:
        header, *body = list(csv.reader(f))
    assert header == ["true\\pred", *NAMES]
    assert [row[0] for row in body] == list(NAMES)
    assert [[int(c) for c in row[1:]] for row in body] == EXPECTED_CM

    with open(tmp_path / "run" / "truth_table.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [row["class"] for row in table] == [row[0] for row in EXPECTED_ROWS]
    for row, expected in zip(table, metrics["truth_table"], strict=True):
        assert list(row) == list(KEYS)
        for key in ("tp", "fp", "fn", "tn", "support"):
            assert int(row[key]) == expected[key]
        for key in ("precision", "recall", "f1"):
            assert len(row[key].split(".")[1]) == 4
            assert float(row[key]) == pytest.approx(expected[key], abs=5e-5)


def test_format_metrics_names_every_class_and_fits_a_terminal() -> None:
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 10, 10_000)
    probs = rng.dirichlet(np.ones(10), size=10_000)
    metrics = compute_metrics(y_true, probs, FASHION_NAMES)
    metrics["calibration"] = calibration(y_true[:500], probs[:500], y_true, probs)
    text = format_metrics(metrics)
    assert f"ECE {metrics['calibration']['ece']:.2%}" in text.splitlines()[0]
    assert f"{metrics['accuracy']:.4f}" in text
    assert f"{metrics['loss']:.4f}" in text
    for name in [*FASHION_NAMES, "macro avg", "weighted avg"]:
        assert name in text
    assert max(len(line) for line in text.splitlines()) <= 120
    # Every count of the confusion matrix shows up, right-aligned, in its row.
    cm_lines = text.split("Confusion matrix")[1].splitlines()[2:12]
    for line, counts in zip(cm_lines, metrics["confusion_matrix"], strict=True):
        assert [int(c) for c in line.split()[-10:]] == counts


def test_confident_mistakes_are_wrong_and_sorted() -> None:
    from fashion_tcn.metrics import confident_mistakes

    y = np.array([0, 1, 2, 0])
    probs = np.array([[0.9, 0.1, 0], [0.8, 0.2, 0], [0.1, 0.3, 0.6], [0.2, 0.7, 0.1]])
    assert confident_mistakes(y, probs).tolist() == [1, 3]
    assert confident_mistakes(y, probs, k=1).tolist() == [1]


def test_calibration_error_is_zero_when_confidence_matches_accuracy_and_temperature_mends_it():
    from fashion_tcn.metrics import (
        expected_calibration_error,
        fit_temperature,
        reliability,
        with_temperature,
    )

    rng = np.random.default_rng(0)
    n, classes = 20_000, 10
    logits = rng.normal(size=(n, classes)) * 2.0
    calibrated = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in calibrated])  # drawn from the probs
    assert expected_calibration_error(labels, calibrated) < 0.02
    overconfident = with_temperature(calibrated, 0.4)  # sharper: same argmax, more confident
    assert (overconfident.argmax(1) == calibrated.argmax(1)).all()
    assert expected_calibration_error(labels, overconfident) > 0.1
    bins = reliability(labels, overconfident)
    assert sum(b["count"] for b in bins) == n and all(b["confidence"] > b["low"] for b in bins)
    temperature = fit_temperature(labels, overconfident)
    assert temperature == pytest.approx(2.5, rel=0.1)  # undoes the 0.4
    assert expected_calibration_error(labels, with_temperature(overconfident, temperature)) < 0.02


def test_anytime_calibration_fits_a_temperature_where_each_prediction_is_made():
    """Early predictions overconfident (T 0.4), the whole sequence calibrated: the whole-sequence
    temperature (about 1) leaves the early ECE high; each point's own temperature mends it."""
    from fashion_tcn.metrics import anytime_calibration, with_temperature

    rng = np.random.default_rng(0)
    n, classes = 8_000, 10
    logits = rng.normal(size=(n, classes)) * 2.0
    calibrated = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in calibrated])
    at = np.stack([with_temperature(calibrated, 0.4), calibrated], axis=1)  # (N, 2 points, C)
    half = n // 2
    temperatures, rows = anytime_calibration(labels[:half], at[:half], labels[half:], at[half:])
    assert temperatures[0] == pytest.approx(2.5, rel=0.15)
    assert temperatures[1] == pytest.approx(1.0, rel=0.1)
    early, whole = rows
    assert early["ece_whole_temperature"] > 0.1 > 0.03 > early["ece_calibrated"]
    assert whole["ece_calibrated"] < 0.03 and early["temperature"] == temperatures[0]


def test_run_temperature_for_a_prefix_is_the_one_fitted_at_or_before_it(tmp_path):
    from fashion_tcn.rundir import RunDir

    run = RunDir(tmp_path)
    assert run.temperature() == 1.0 and run.temperature(steps=5) == 1.0  # not evaluated yet
    points = [{"steps": 3, "temperature": 3.0}, {"steps": 6, "temperature": 2.0}]
    run.write_json(run.calibration_file, {"temperature": 1.2, "anytime": points})
    assert run.temperature() == 1.2
    assert [run.temperature(steps=t) for t in (1, 3, 5, 6, 28)] == [3.0, 3.0, 3.0, 2.0, 2.0]


def test_temperature_never_raises_the_validation_log_loss():
    """Already calibrated, overconfident or underconfident: the fitted temperature's validation
    log-loss is at most that of none (the one thing temperature scaling promises)."""
    from fashion_tcn.metrics import calibration, with_temperature

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3_000, 10)) * 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(10, p=p) for p in probs])
    for t in (1.0, 0.5, 2.0):
        shown = with_temperature(probs, t)
        fitted = calibration(labels[:1500], shown[:1500], labels[1500:], shown[1500:])
        assert fitted["nll_validation_calibrated"] <= fitted["nll_validation"]
        if t != 1.0:
            assert fitted["nll_validation_calibrated"] < fitted["nll_validation"] - 0.01
