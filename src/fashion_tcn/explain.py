"""Why a model said what it said: occlusion maps over the image, the same attribution summed
per step of the sequence, and the prediction after each step.

Occlusion (Zeiler & Fergus, 2014) blacks out one small square of the image at a time and
measures how much the probability of a class falls: a large fall marks pixels the answer
depends on, a rise pixels that argue against it. It needs only forward passes, so it works on
every backend and every model here (TCN, RNN, CNN) without gradients. Black is the natural
"nothing there" of Fashion-MNIST, whose background is black.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from fashion_tcn.models import final_probabilities, model_inputs, step_predictions

Predict = Callable[[np.ndarray], np.ndarray]  # (N, 28, 28) uint8 -> (N, C) probabilities


def occlusion(
    predict: Predict,
    images: np.ndarray,
    targets: np.ndarray,
    patch: int = 4,
    stride: int = 2,
    batch: int = 4096,
) -> np.ndarray:
    """(N, H, W) attribution of each pixel to class `targets[i]`: the mean fall in that class's
    probability over the occluded squares (`patch` x `patch`, every `stride` pixels) that
    cover the pixel. Rows of one image's occlusions go through `predict` together."""
    images = np.asarray(images)
    n, height, width = images.shape
    corners = [
        (r, c)
        for r in range(0, height - patch + 1, stride)
        for c in range(0, width - patch + 1, stride)
    ]
    occluded = np.repeat(images[:, None], len(corners), axis=1)  # (N, K, H, W)
    for k, (r, c) in enumerate(corners):
        occluded[:, k, r : r + patch, c : c + patch] = 0
    flat = occluded.reshape(-1, height, width)
    probs = np.concatenate([predict(flat[i : i + batch]) for i in range(0, len(flat), batch)])
    rows = np.arange(n)
    base = predict(images)[rows, targets]  # (N,)
    drop = base[:, None] - probs.reshape(n, len(corners), -1)[rows, :, targets]  # (N, K)

    attribution = np.zeros((n, height, width))
    coverage = np.zeros((height, width))
    for k, (r, c) in enumerate(corners):
        attribution[:, r : r + patch, c : c + patch] += drop[:, k, None, None]
        coverage[r : r + patch, c : c + patch] += 1
    return attribution / np.maximum(coverage, 1)


def per_step(attribution: np.ndarray, mode: str, permutation: np.ndarray | None = None):
    """(N, 28, 28) pixel attribution -> (N, steps): summed over the pixels each step reads, in
    the order the sequence mode feeds them (a row, a column or one pixel per step)."""
    if mode == "rows":
        return attribution.sum(axis=2)
    if mode == "columns":
        return attribution.sum(axis=1)
    flat = attribution.reshape(len(attribution), -1)
    return flat[:, permutation] if mode == "permuted" else flat


def class_maps(
    predict: Predict,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    per_class: int,
    stride: int = 4,
) -> dict[str, np.ndarray]:
    """Per class, the mean occlusion map of the first `per_class` images of that class towards
    their true class (`class_maps`, (C, H, W)), how many images each averages (`class_counts`)
    and their mean image (`class_images`). Squares side by side (`stride` 4: 49 forward passes
    per image, not 169) are enough for a mean; a sample stands for the test set."""
    labels = np.asarray(labels)
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)])
    maps = occlusion(predict, images[keep], labels[keep], stride=stride)
    counts = np.bincount(labels[keep], minlength=num_classes)

    def mean_per_class(values: np.ndarray) -> np.ndarray:
        empty = np.zeros(values.shape[1:])
        kept = labels[keep]
        return np.stack(
            [values[kept == c].mean(axis=0) if counts[c] else empty for c in range(num_classes)]
        )

    return {
        "class_maps": mean_per_class(maps),
        "class_counts": counts,
        "class_images": mean_per_class(images[keep].astype(float)),
    }


def predictor(model: keras.Model, mode: str, permutation: np.ndarray | None = None) -> Predict:
    """Images -> the model's final probabilities, whatever the model takes."""

    def predict(images: np.ndarray) -> np.ndarray:
        x = model_inputs(model, images, mode, permutation)
        return final_probabilities(model.predict(x, batch_size=512, verbose=0))

    return predict


def explain(
    model: keras.Model, images: np.ndarray, mode: str, permutation: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per image: the probabilities, the predicted class, the occlusion map towards it (N, H, W)
    and its per-step sums (N, T); for a TCN also `trajectory` (N, T, C), the probabilities after
    each step (causal, so one parallel pass gives them all)."""
    predict = predictor(model, mode, permutation)
    probs = predict(images)
    predicted = probs.argmax(axis=1)
    attribution = occlusion(predict, images, predicted)
    out = {
        "images": np.asarray(images),
        "probabilities": probs,
        "predicted": predicted,
        "attribution": attribution,
        "steps": per_step(attribution, mode, permutation),
    }
    if any(layer.name == "tcn" for layer in model.layers):
        out["trajectory"] = step_predictions(model, model_inputs(model, images, mode, permutation))
    return out
