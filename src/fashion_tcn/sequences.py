"""Images become sequences, and sequences become batches: a `tf.data` pipeline on TensorFlow,
a `keras.utils.PyDataset` on the other Keras backends (JAX or PyTorch, e.g. on a GPU machine
without TensorFlow).

A 28x28 image is read as a sequence of time steps:
    rows      28 steps x 28 features   (top to bottom, one row per step)
    columns   28 steps x 28 features   (left to right, one column per step)
    pixels    784 steps x 1 feature    (raster order: the sequential-MNIST task)
    permuted  784 steps x 1 feature    (one fixed random pixel order: the permuted-MNIST task)
Pixels are scaled to [0, 1] here; standardisation with train-set statistics is the model's first
layer, so a saved model carries it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from fashion_tcn.config import SEQUENCE_MODES, sequence_length

Augment = Callable[[Any], Any]  # (B, 28, 28) uint8 -> same, training only


def sequence_shape(mode: str) -> tuple[int, int]:
    """(steps, features) of one sequence."""
    steps = sequence_length(mode)
    return steps, 784 // steps


def make_permutation(seed: int) -> np.ndarray:
    """The fixed pixel order of `permuted` mode; PCG64 keeps it stable across NumPy versions."""
    return np.random.default_rng(seed).permutation(784)


def to_sequences(images, mode: str, permutation: np.ndarray | None = None):
    """(B, 28, 28) uint8 images -> (B, steps, features) float32 in [0, 1]; backend ops only."""
    if mode not in SEQUENCE_MODES:
        raise ValueError(f"unknown sequence mode {mode!r}")
    x = keras.ops.cast(images, "float32") / 255.0
    if mode == "rows":
        return x
    if mode == "columns":
        return keras.ops.transpose(x, (0, 2, 1))
    x = keras.ops.reshape(x, (-1, 784))
    if mode == "permuted":
        if permutation is None:
            raise ValueError("permuted mode needs the run's permutation")
        x = keras.ops.take(x, permutation, axis=1)
    return keras.ops.expand_dims(x, -1)


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    mode: str,
    *,
    batch_size: int,
    permutation: np.ndarray | None = None,
    shuffle: bool = False,
    seed: int = 0,
    augment: Augment | None = None,
) -> Any:
    """Batches of (sequence, label); `augment` runs on the images, before sequencing."""
    if keras.backend.backend() != "tensorflow":
        return SequenceBatches(
            images, labels, mode, batch_size, permutation, shuffle, seed, augment
        )
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, labels.astype("int32")))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augment is not None:
        dataset = dataset.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.map(
        lambda x, y: (to_sequences(x, mode, permutation), y), num_parallel_calls=tf.data.AUTOTUNE
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


class SequenceBatches(keras.utils.PyDataset):
    """The batches `make_dataset` gives, without TensorFlow: the same images in the same batch
    size, shuffled afresh every epoch from `seed`, augmented (if asked) before sequencing."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        mode: str,
        batch_size: int,
        permutation: np.ndarray | None = None,
        shuffle: bool = False,
        seed: int = 0,
        augment: Augment | None = None,
    ):
        super().__init__()
        self.images, self.labels = images, labels.astype("int32")
        self.mode, self.batch_size, self.permutation = mode, batch_size, permutation
        self.shuffle, self.augment = shuffle, augment
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(images))
        self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        take = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        x = self.images[take]
        if self.augment is not None:
            x = self.augment(x)
        return to_sequences(x, self.mode, self.permutation), self.labels[take]

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self.rng.permutation(len(self.images))
