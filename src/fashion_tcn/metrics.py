"""Metrics from predictions: accuracy, loss, confusion matrix, a per-class truth table,
calibration and accuracy along the sequence.

Arrays in, numbers out: labels and softmax probabilities, no deep learning backend, quick to
test. The confusion matrix is the single source of truth: the truth table is derived from it, so
the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix

# Keras' epsilon and clipping for categorical cross-entropy, so the loss matches `model.evaluate`.
_EPSILON = 1e-7
RELIABILITY_BINS = 15

TRUTH_TABLE_COLUMNS = ("class", "tp", "fp", "fn", "tn", "precision", "recall", "f1", "support")
COUNT_COLUMNS = ("tp", "fp", "fn", "tn", "support")
RATE_COLUMNS = ("precision", "recall", "f1")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts, rows = true class, cols = predicted class.

    Labels outside [0, C) raise instead of being silently dropped, as sklearn would do.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} has labels outside [0, {num_classes})")
    cm = confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))
    return cm.astype(np.int64)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, with 0.0 where the denominator is 0 (and no warning)."""
    out = np.zeros(np.shape(numerator), dtype=float)
    return np.divide(numerator, denominator, out=out, where=denominator > 0)


def truth_table(cm: np.ndarray, class_names: Sequence[str]) -> list[dict]:
    """Per-class TP/FP/FN/TN, precision, recall, F1 and support, then macro and weighted averages.

    Computed from the confusion matrix (sklearn's scorers need the label arrays again), with the
    same definitions as sklearn's `precision_recall_fscore_support(zero_division=0.0)`.
    """
    cm = np.asarray(cm, dtype=np.int64)
    if cm.shape != (len(class_names), len(class_names)):
        raise ValueError(
            f"confusion matrix shape {cm.shape} does not match {len(class_names)} classes"
        )

    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp  # predicted as the class, but another class
    fn = cm.sum(axis=1) - tp  # of the class, but predicted as another
    tn = cm.sum() - tp - fp - fn
    support = tp + fn
    precision = _safe_divide(tp, tp + fp)
    recall = _safe_divide(tp, tp + fn)
    f1 = _safe_divide(2 * tp, 2 * tp + fp + fn)  # == harmonic mean of precision and recall

    rows = [
        {
            "class": str(name),
            "tp": int(tp[i]),
            "fp": int(fp[i]),
            "fn": int(fn[i]),
            "tn": int(tn[i]),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    ]

    total = int(support.sum())
    summed = {"tp": int(tp.sum()), "fp": int(fp.sum()), "fn": int(fn.sum()), "tn": int(tn.sum())}
    rates = {"precision": precision, "recall": recall, "f1": f1}
    macro = {key: float(values.mean()) if values.size else 0.0 for key, values in rates.items()}
    weighted = {
        key: float(np.dot(values, support) / total) if total else 0.0
        for key, values in rates.items()
    }
    rows.append({"class": "macro avg", **summed, **macro, "support": total})
    rows.append({"class": "weighted avg", **summed, **weighted, "support": total})
    return rows


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, mean categorical cross-entropy, confusion matrix and truth table, JSON-ready.

    `y_true` holds integer labels (N,), `probs` the softmax outputs (N, C).
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    num_classes = len(class_names)
    if probs.ndim != 2 or probs.shape[1] != num_classes:
        raise ValueError(f"probs must have shape (N, {num_classes}), got {probs.shape}")
    if y_true.ndim != 1 or y_true.shape[0] != probs.shape[0]:
        raise ValueError(f"y_true must have shape ({probs.shape[0]},), got {y_true.shape}")
    if probs.shape[0] == 0:
        raise ValueError("no examples to evaluate")
    if not np.issubdtype(y_true.dtype, np.integer):
        raise ValueError(f"y_true must hold integer class labels, got dtype {y_true.dtype}")
    if not np.isfinite(probs).all():
        raise ValueError("probs contain NaN or infinite values (did training diverge?)")

    y_pred = probs.argmax(axis=1)
    cm = confusion(y_true, y_pred, num_classes)  # also checks y_true's range
    true_class_probs = probs[np.arange(len(y_true)), y_true]
    loss = -np.log(np.clip(true_class_probs, _EPSILON, 1.0 - _EPSILON)).mean()

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "loss": float(loss),
        "num_examples": len(y_true),
        "confusion_matrix": cm.tolist(),
        "class_names": [str(name) for name in class_names],
        "truth_table": truth_table(cm, class_names),
    }


def reliability(y_true: np.ndarray, probs: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict]:
    """Per confidence bin (equal width on [0, 1]): how many predictions, their mean confidence
    and their accuracy; the reliability diagram's bars. Empty bins are left out."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(y_true)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return [
        {
            "low": b / bins,
            "high": (b + 1) / bins,
            "count": int((which == b).sum()),
            "confidence": float(confidence[which == b].mean()),
            "accuracy": float(correct[which == b].mean()),
        }
        for b in range(bins)
        if (which == b).any()
    ]


def expected_calibration_error(
    y_true: np.ndarray, probs: np.ndarray, bins: int = RELIABILITY_BINS
) -> float:
    """ECE (Guo et al., 2017): the count-weighted mean gap between confidence and accuracy."""
    rows = reliability(y_true, probs, bins)
    total = sum(row["count"] for row in rows)
    return float(
        sum(row["count"] * abs(row["confidence"] - row["accuracy"]) for row in rows) / total
    )


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax probabilities rescaled as if their logits were divided by `temperature`."""
    logits = np.log(np.clip(probs, 1e-30, 1.0)) / temperature
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def log_loss(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    return float(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-30, 1.0)).mean())


def fit_temperature(y_true: np.ndarray, probs: np.ndarray) -> float:
    """The temperature that minimises the validation cross-entropy (Guo et al., 2017): one
    number, so it changes confidence but never which class wins. Never worse on validation than
    no temperature (1.0 is kept unless the search finds lower)."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        return log_loss(y_true, with_temperature(probs, float(np.exp(log_t))))

    found = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(found.x)) if found.fun < nll(0.0) else 1.0


def calibration(
    y_val: np.ndarray, val_probs: np.ndarray, y_test: np.ndarray, probs: np.ndarray
) -> dict:
    """Temperature scaling fitted on the validation split; the test set's ECE and reliability
    bins before and after it (accuracy is unchanged: the winning class stays the same)."""
    temperature = fit_temperature(y_val, val_probs)
    calibrated = with_temperature(probs, temperature)
    return {
        "temperature": temperature,
        "validation_examples": len(y_val),
        # what the fit guarantees: the validation log-loss does not rise (the ECE may)
        "nll_validation": log_loss(y_val, val_probs),
        "nll_validation_calibrated": log_loss(y_val, with_temperature(val_probs, temperature)),
        "bins": RELIABILITY_BINS,
        "ece": expected_calibration_error(y_test, probs),
        "ece_calibrated": expected_calibration_error(y_test, calibrated),
        "reliability": reliability(y_test, probs),
        "reliability_calibrated": reliability(y_test, calibrated),
    }


ANYTIME_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def anytime_accuracy(
    y_true: np.ndarray, probs_at: np.ndarray, steps: int, at: Sequence[int]
) -> list[dict]:
    """Accuracy of the predictions made after steps `at` (0-based) of a `steps`-long sequence.

    probs_at: (N, len(at), C). One row per step: fraction of the sequence seen, steps, accuracy.
    """
    correct = probs_at.argmax(axis=-1) == np.asarray(y_true)[:, None]
    return [
        {"fraction": round((t + 1) / steps, 4), "steps": t + 1, "accuracy": float(acc)}
        for t, acc in zip(at, correct.mean(axis=0), strict=True)
    ]


def anytime_calibration(
    y_val: np.ndarray, val_at: np.ndarray, y_test: np.ndarray, test_at: np.ndarray
) -> tuple[list[float], list[dict]]:
    """A temperature per point of the sequence, each fitted on validation predictions made
    there, and the test ECE at each point raw, with the whole-sequence temperature (the last
    point's) and with its own. Early predictions are surer than they are right: one temperature
    fitted on whole sequences leaves them so (benchmarks/anytime_calibration.py)."""
    temperatures = [fit_temperature(y_val, val_at[:, i]) for i in range(val_at.shape[1])]
    rows = [
        {
            "ece": expected_calibration_error(y_test, probs),
            "ece_whole_temperature": expected_calibration_error(
                y_test, with_temperature(probs, temperatures[-1])
            ),
            "temperature": t,
            "ece_calibrated": expected_calibration_error(y_test, with_temperature(probs, t)),
        }
        for probs, t in zip(np.moveaxis(test_at, 1, 0), temperatures, strict=True)
    ]
    return temperatures, rows


def confident_mistakes(y_true: np.ndarray, probs: np.ndarray, k: int = 24) -> np.ndarray:
    """Indices of the `k` wrong predictions the model was surest of, surest first."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y_true)
    return wrong[np.argsort(-probs[wrong].max(axis=1), kind="stable")[:k]]
