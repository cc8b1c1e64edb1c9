"""Fuzzing the readers of untrusted files: whatever the bytes, the IDX and CSV data readers give
an array or a one-line DataError, the predict readers an image or an item carrying its error,
and the config loader a Config or a ConfigError. Bounded to a few seconds each."""

from __future__ import annotations

import gzip
import io
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fashion_tcn.config import ConfigError, load_config
from fashion_tcn.data import DataError, read_csv, read_idx
from fashion_tcn.predict import load_inputs

pytestmark = pytest.mark.backend

FAST = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def _write(name: str, content: bytes) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    path = folder / name
    path.write_bytes(content)
    return path


def _one_line(error: Exception) -> None:
    assert "\n" not in str(error) and str(error)


# IDX: a plausible header (magic, dimensions) over a payload of any length, maybe gzipped
idx_files = st.builds(
    lambda magic, dims, extra, payload, zipped: (gzip.compress if zipped else bytes)(
        struct.pack(">I", magic)
        + b"".join(struct.pack(">I", d) for d in dims)
        + payload[: max(0, int(np.prod(dims)) + extra)]
    ),
    st.sampled_from([0x801, 0x803, 0x802, 0x0D03, 0x80C, 0]),
    st.lists(st.sampled_from([0, 1, 2, 27, 28, 29, 2**31]), min_size=0, max_size=4),
    st.integers(-3, 3),
    st.binary(min_size=0, max_size=3000),
    st.booleans(),
)


@FAST
@given(st.one_of(idx_files, st.binary(max_size=200)))
def test_idx_reader_returns_an_array_or_a_data_error(content):
    try:
        array = read_idx(_write("f-idx3-ubyte", content))
    except DataError as error:
        _one_line(error)
        return
    assert array.dtype == np.uint8 and array.ndim in (1, 3)
    assert array.ndim == 1 or array.shape[1:] == (28, 28)


# CSV: rows of cells from a pool of good and bad tokens, of right and wrong lengths
cells = st.sampled_from(["0", "9", "255", "256", "-1", "x", "", "nan", "1e3", "3.5", " 7"])
rows = st.builds(
    lambda label, fill, length, swaps: _swap([label, *[fill] * length], swaps),
    cells,
    st.sampled_from(["0", "255", "17"]),
    st.sampled_from([784, 784, 784, 783, 785, 0]),
    st.lists(st.tuples(st.integers(0, 784), cells), max_size=3),
)


def _swap(values: list[str], swaps: list[tuple[int, str]]) -> str:
    for index, cell in swaps:
        if index < len(values):
            values[index] = cell
    return ",".join(values)


csv_texts = st.builds(
    lambda header, lines: ("label,pixel1\n" if header else "") + "\n".join(lines),
    st.booleans(),
    st.lists(rows, max_size=4),
)


@FAST
@given(st.one_of(csv_texts.map(str.encode), st.binary(max_size=300)))
def test_csv_reader_returns_a_split_or_a_data_error(content):
    try:
        split = read_csv(_write("fashion-mnist_train.csv", content))
    except DataError as error:
        _one_line(error)
        return
    assert split.images.shape[1:] == (28, 28) and len(split.images) == len(split.labels)
    assert split.labels.min() >= 0 and split.labels.max() <= 9


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()
mutated_pngs = st.builds(
    lambda cuts, flips: _mutate(PNG, cuts, flips),
    st.integers(1, len(PNG)),
    st.lists(st.tuples(st.integers(0, len(PNG) - 1), st.integers(0, 255)), max_size=6),
)


def _mutate(data: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    damaged = bytearray(data[:cut])
    for index, value in flips:
        if index < len(damaged):
            damaged[index] = value
    return bytes(damaged)


@FAST
@given(
    st.one_of(mutated_pngs, st.binary(max_size=400)),
    st.sampled_from([".png", ".jpg", ".csv", ".npy", ".bmp"]),
)
def test_predict_readers_never_raise(content, suffix):
    items = load_inputs([_write(f"input{suffix}", content)])
    assert items
    for item in items:
        if item.error is None:
            assert item.image.shape == (28, 28) and item.image.dtype == np.uint8
        else:
            _one_line(ValueError(item.error))


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
sections = st.dictionaries(
    st.sampled_from(["data", "model", "train", "augment", "other"]),
    st.one_of(
        st.dictionaries(
            st.sampled_from(
                ["sequence", "filters", "dilations", "lr", "epochs", "flip", "seed", "activation"]
            ),
            yaml_values,
            max_size=3,
        ),
        yaml_values,
    ),
    max_size=3,
)


@FAST
@given(sections)
def test_config_loader_returns_a_config_or_a_config_error(raw):
    import yaml

    try:
        load_config(_write("c.yaml", yaml.safe_dump(raw).encode())).resolved()
    except ConfigError as error:
        _one_line(error)
