"""Images to sequences: shapes, order, the permutation, the tf.data pipeline and its
backend-neutral twin."""

import numpy as np
import pytest

from fashion_tcn.sequences import (
    ImageBatches,
    ToSequence,
    make_dataset,
    make_permutation,
    sequence_shape,
    to_sequences,
    training_batches,
)

pytestmark = pytest.mark.backend


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize(
    ("mode", "shape"),
    [("rows", (28, 28)), ("columns", (28, 28)), ("pixels", (784, 1)), ("permuted", (784, 1))],
)
def test_shapes_and_range(images, mode, shape):
    seqs = np.asarray(to_sequences(images, mode, make_permutation(0)))
    assert sequence_shape(mode) == shape
    assert seqs.shape == (5, *shape)
    assert seqs.dtype == np.float32
    assert seqs.min() >= 0 and seqs.max() <= 1


def test_orders(images):
    scaled = images / np.float32(255)
    np.testing.assert_allclose(to_sequences(images, "rows")[:, 3], scaled[:, 3, :])
    np.testing.assert_allclose(to_sequences(images, "columns")[:, 3], scaled[:, :, 3])
    np.testing.assert_allclose(to_sequences(images, "pixels")[:, 28 * 2 + 5, 0], scaled[:, 2, 5])


def test_permutation_is_fixed_and_invertible(images):
    perm = make_permutation(7)
    np.testing.assert_array_equal(perm, make_permutation(7))
    assert not np.array_equal(perm, make_permutation(8))
    assert sorted(perm) == list(range(784))
    seqs = np.asarray(to_sequences(images, "permuted", perm))[..., 0]
    restored = np.empty_like(seqs)
    restored[:, perm] = seqs
    np.testing.assert_allclose(restored.reshape(5, 28, 28), images / np.float32(255))


def test_permuted_without_permutation_fails(images):
    with pytest.raises(ValueError, match="permutation"):
        to_sequences(images, "permuted")


def test_to_sequence_layer_matches_function_and_round_trips(images):
    perm = make_permutation(2)
    layer = ToSequence("permuted", perm)
    np.testing.assert_array_equal(
        np.asarray(layer(images)), np.asarray(to_sequences(images, "permuted", perm))
    )
    again = ToSequence.from_config(layer.get_config())
    np.testing.assert_array_equal(np.asarray(again(images)), np.asarray(layer(images)))
    assert layer.compute_output_shape((None, 28, 28)) == (None, 784, 1)


def test_dataset_batches_images_and_keeps_labels(images):
    labels = np.arange(5)
    dataset = make_dataset(images, labels, batch_size=2)
    if isinstance(dataset, ImageBatches):
        batches = [dataset[i] for i in range(len(dataset))]
    else:
        batches = list(dataset)
    assert [len(y) for _, y in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), labels)
    np.testing.assert_array_equal(np.concatenate([np.asarray(x) for x, _ in batches]), images)
    assert np.asarray(batches[0][0]).dtype == np.uint8


def test_each_epoch_has_its_own_order_resumable_from_any_epoch():
    """Epoch e's order depends on (seed, e) alone, so a run resumed at epoch e (a new process
    starting at `first_epoch=e`) reads the images as the uninterrupted run did."""
    many = np.zeros((50, 28, 28), np.uint8)
    labels = np.arange(50)

    def orders(seed, first_epoch=0, epochs=3):
        batches, steps = training_batches(
            many, labels, batch_size=50, seed=seed, first_epoch=first_epoch, epochs=epochs
        )
        if steps is None:  # a PyDataset: Keras calls on_epoch_end between epochs
            seen = []
            for _ in range(first_epoch, epochs):
                seen.append(batches[0][1].copy())
                batches.on_epoch_end()
            return seen
        return [np.asarray(y) for _, y in batches]  # tf.data: every epoch, one after another

    straight = orders(4)
    assert all(sorted(order) == list(labels) for order in straight)
    assert not np.array_equal(straight[0], straight[1])  # a new order every epoch
    np.testing.assert_array_equal(orders(4, first_epoch=2)[0], straight[2])
    np.testing.assert_array_equal(orders(4)[1], straight[1])  # the same orders for the same seed
    assert not np.array_equal(orders(5)[0], straight[0])
