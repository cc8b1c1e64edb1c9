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
)


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
    batches = list(make_dataset(images, labels, batch_size=2))
    assert [len(y) for _, y in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), labels)
    np.testing.assert_array_equal(np.concatenate([np.asarray(x) for x, _ in batches]), images)
    assert np.asarray(batches[0][0]).dtype == np.uint8


def test_shuffle_is_seeded_and_shuffles():
    many = np.zeros((64, 28, 28), np.uint8)
    labels = np.arange(64)

    def order(seed):
        ds = make_dataset(many, labels, batch_size=64, shuffle=True, seed=seed)
        return np.asarray(next(iter(ds))[1])

    np.testing.assert_array_equal(order(3), order(3))
    assert not np.array_equal(order(3), labels)
    assert sorted(order(3)) == list(labels)


def test_backend_neutral_batches_match_tf_data(images):
    """JAX and PyTorch runs get ImageBatches: the same batches as tf.data, reshuffled each
    epoch from the seed."""
    labels = np.arange(5)
    plain = ImageBatches(images, labels, 2)
    expected = list(make_dataset(images, labels, batch_size=2))
    assert len(plain) == len(expected) == 3
    for (x, y), (tx, ty) in zip((plain[i] for i in range(3)), expected, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(tx))
        np.testing.assert_array_equal(y, np.asarray(ty))

    def epochs(seed):
        batches = ImageBatches(images, labels, 5, shuffle=True, seed=seed)
        first = batches[0][1].copy()
        batches.on_epoch_end()
        return first, batches[0][1]

    first, second = epochs(4)
    assert sorted(first) == sorted(second) == list(range(5))
    assert not np.array_equal(first, second)  # a new order every epoch
    np.testing.assert_array_equal(epochs(4)[0], first)  # the same orders for the same seed
