"""Images become sequences (a function and the model layer `ToSequence`), and images become
batches (`tf.data` on TensorFlow; `ImageBatches`, a `keras.utils.PyDataset`, on the other
backends), each training epoch in an order drawn from the seed and the epoch alone.

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
from typing import Any

import keras
import numpy as np

from fashion_tcn.config import SEQUENCE_MODES, sequence_length


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


@keras.saving.register_keras_serializable(package="fashion_tcn")
class ToSequence(keras.layers.Layer):
    """`to_sequences` as a layer: a model that takes images carries its sequence mode (and the
    permutation of `permuted` mode) inside it. Always float32, whatever the precision policy.

    Args:
        mode: rows, columns, pixels or permuted.
        permutation: the 784-pixel order of `permuted` mode (ignored otherwise).

    Call arguments:
        images: (batch, 28, 28), values 0..255.

    Returns:
        (batch, steps, features) float32 in [0, 1].
    """

    def __init__(self, mode: str, permutation: list[int] | None = None, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if mode not in SEQUENCE_MODES:
            raise ValueError(f"unknown sequence mode {mode!r}")
        self.mode = mode
        self.permutation = None if permutation is None else [int(i) for i in permutation]

    def call(self, images):
        order = None if self.permutation is None else np.asarray(self.permutation, "int32")
        return to_sequences(images, self.mode, order)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *sequence_shape(self.mode))

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "permutation": self.permutation}


def epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
    """The order epoch `epoch` reads the training images in: a function of (seed, epoch) alone,
    so a run resumed at that epoch reads them as the uninterrupted run would have."""
    return np.random.default_rng([seed, epoch]).permutation(size)


def make_dataset(images: np.ndarray, labels: np.ndarray, *, batch_size: int) -> Any:
    """Batches of (uint8 images, int32 labels) in order, for validation and testing: `tf.data` on
    TensorFlow, `ImageBatches` on the other backends."""
    if keras.backend.backend() != "tensorflow":
        return ImageBatches(images, labels, batch_size)
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, labels.astype("int32")))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def training_batches(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    first_epoch: int,
    epochs: int,
) -> tuple[Any, int | None]:
    """Training batches for epochs `first_epoch`..`epochs - 1`, each epoch in `epoch_order`, and
    the `steps_per_epoch` to give `fit` (or None).

    Nothing but slicing happens here: sequencing and augmentation are the model's own first
    layers. On TensorFlow this is one `tf.data` pipeline over all the epochs (with
    steps_per_epoch, Keras reads on from one iterator), since a `keras.utils.PyDataset` fed the
    CPU model at 0.61 of its speed (benchmarks/config_speed.py); elsewhere it is `ImageBatches`.
    """
    if keras.backend.backend() != "tensorflow":
        return ImageBatches(images, labels, batch_size, True, seed, first_epoch), None
    import tensorflow as tf

    size = len(images)
    x, y = tf.constant(images), tf.constant(labels.astype("int32"))

    def epoch_batches(epoch):
        order = tf.numpy_function(lambda e: epoch_order(size, seed, int(e)), [epoch], tf.int64)
        return tf.data.Dataset.from_tensor_slices(tf.ensure_shape(order, [size])).batch(batch_size)

    dataset = (
        tf.data.Dataset.range(first_epoch, epochs)
        .flat_map(epoch_batches)
        .map(lambda take: (tf.gather(x, take), tf.gather(y, take)))
        .prefetch(tf.data.AUTOTUNE)
    )
    return dataset, math.ceil(size / batch_size)


class ImageBatches(keras.utils.PyDataset):
    """Batches of images for every Keras backend. Keras calls `on_epoch_end` after each epoch;
    the next epoch's order is drawn from (seed, epoch), not from a generator's running state,
    which a resumed run would not have (tf.data's reshuffling restarts with every process)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        first_epoch: int = 0,
    ):
        super().__init__()
        self.images, self.labels = images, labels.astype("int32")
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = first_epoch
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if self.shuffle:
            return epoch_order(len(self.images), self.seed, self.epoch)
        return np.arange(len(self.images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        take = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.images[take], self.labels[take]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()
