"""Tests for fashion_tcn.data: tiny synthetic IDX and CSV files; the real data under -m slow."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from fashion_tcn import data
from fashion_tcn.data import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens, so connections are refused


# --- writers -------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The IDX encoding of a uint8 array: magic, big-endian dims, then the bytes."""
    magic = magic if magic is not None else (0x800 | array.ndim)
    dims = b"".join(d.to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def write_file(path: Path, payload: bytes, *, gz: bool) -> Path:
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def random_split(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    return images, labels


def write_idx_dir(directory: Path, rng: np.random.Generator, *, gz: bool = True) -> dict:
    """Write the four IDX files for tiny train (6) and test (4) splits; return the arrays."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"train": random_split(rng, 6), "test": random_split(rng, 4)}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = arrays[split]
        suffix = ".gz" if gz else ""
        write_file(directory / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images), gz=gz)
        write_file(directory / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels), gz=gz)
    return arrays


def tiny_hashes(arrays: dict) -> dict[str, str]:
    """OFFICIAL_SHA256 for the tiny files, so verification passes on them."""
    hashes = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = arrays[split]
        hashes[f"{prefix}-images-idx3-ubyte"] = hashlib.sha256(idx_bytes(images)).hexdigest()
        hashes[f"{prefix}-labels-idx1-ubyte"] = hashlib.sha256(idx_bytes(labels)).hexdigest()
    return hashes


def csv_rows(rng: np.random.Generator, n: int = 4) -> list[list[str]]:
    images, labels = random_split(rng, n)
    table = np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1)
    return [[str(v) for v in row] for row in table.tolist()]


HEADER = ["label"] + [f"pixel{i}" for i in range(1, 785)]


def write_csv(path: Path, rows: list[list[str]], *, header: bool = True) -> Path:
    lines = ([HEADER] if header else []) + rows
    path.write_text("".join(",".join(row) + "\n" for row in lines))
    return path


def assert_one_line_error(err: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    for word in words:
        assert word in message, message


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No env var, an empty Debian dir, a fresh cache and unreachable mirrors; returns the cache."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(data, "MIRRORS", (UNREACHABLE,))
    return tmp_path / "xdg" / "fashion-tcn"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server for tmp_path/www; yields (base URL, served directory)."""
    root = tmp_path / "www"
    root.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    httpd.shutdown()
    httpd.server_close()
    thread.join()


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path: Path, rng: np.random.Generator, gz: bool) -> None:
    images, labels = random_split(rng, 5)
    images_path = write_file(tmp_path / "images", idx_bytes(images), gz=gz)
    labels_path = write_file(tmp_path / "labels", idx_bytes(labels), gz=gz)
    read_images, read_labels = data.read_idx(images_path), data.read_idx(str(labels_path))
    assert read_images.dtype == np.uint8 and read_images.shape == (5, 28, 28)
    assert read_labels.dtype == np.uint8 and read_labels.shape == (5,)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)


def test_read_idx_detects_gzip_by_content(tmp_path: Path, rng: np.random.Generator) -> None:
    images, _ = random_split(rng, 3)
    gz_named_raw = write_file(tmp_path / "raw.gz", idx_bytes(images), gz=False)
    raw_named_gz = write_file(tmp_path / "raw", idx_bytes(images), gz=True)
    np.testing.assert_array_equal(data.read_idx(gz_named_raw), images)
    np.testing.assert_array_equal(data.read_idx(raw_named_gz), images)


@pytest.mark.parametrize("gz", [True, False])
def test_load_idx_split_round_trip(tmp_path: Path, rng: np.random.Generator, gz: bool) -> None:
    arrays = write_idx_dir(tmp_path, rng, gz=gz)
    hashes = tiny_hashes(arrays)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        loaded = data.load_idx_split(tmp_path, split, verify=False)
        images, labels = arrays[split]
        assert len(loaded) == len(labels)
        assert loaded.images.dtype == np.uint8 and loaded.labels.dtype == np.int64
        np.testing.assert_array_equal(loaded.images, images)
        np.testing.assert_array_equal(loaded.labels, labels)
        assert set(loaded.files) == {"images", "images_sha256", "labels", "labels_sha256"}
        assert os.path.isabs(loaded.files["images"])
        assert loaded.files["images_sha256"] == hashes[f"{prefix}-images-idx3-ubyte"]
        assert loaded.files["labels_sha256"] == hashes[f"{prefix}-labels-idx1-ubyte"]


def test_load_idx_split_prefers_gz(tmp_path: Path, rng: np.random.Generator) -> None:
    write_idx_dir(tmp_path, rng, gz=False)
    arrays = write_idx_dir(tmp_path, rng, gz=True)
    loaded = data.load_idx_split(tmp_path, "train", verify=False)
    assert loaded.files["images"].endswith(".gz")
    np.testing.assert_array_equal(loaded.images, arrays["train"][0])


def test_load_idx_split_verifies_patched_hashes(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays = write_idx_dir(tmp_path, rng)
    monkeypatch.setattr(data, "OFFICIAL_SHA256", tiny_hashes(arrays))
    assert len(data.load_idx_split(tmp_path, "test")) == 4


@pytest.mark.parametrize("header", [True, False])
def test_read_csv_round_trip(tmp_path: Path, rng: np.random.Generator, header: bool) -> None:
    rows = csv_rows(rng, 5)
    split = data.read_csv(write_csv(tmp_path / "f.csv", rows, header=header))
    table = np.array(rows, dtype=np.int64)
    assert len(split) == 5
    assert split.images.dtype == np.uint8 and split.images.shape == (5, 28, 28)
    assert split.labels.dtype == np.int64 and split.labels.shape == (5,)
    np.testing.assert_array_equal(split.labels, table[:, 0])
    np.testing.assert_array_equal(split.images.reshape(5, -1), table[:, 1:])
    expected_sha = hashlib.sha256((tmp_path / "f.csv").read_bytes()).hexdigest()
    assert split.files == {"csv": str(tmp_path / "f.csv"), "csv_sha256": expected_sha}


def test_read_csv_single_row_crlf_and_blank_lines(tmp_path: Path, rng: np.random.Generator) -> None:
    row = csv_rows(rng, 1)[0]
    path = tmp_path / "f.csv"
    path.write_bytes(b"\r\n" + ",".join(row).encode() + b"\r\n\r\n")
    split = data.read_csv(path)
    assert split.images.shape == (1, 28, 28)
    assert split.labels[0] == int(row[0])


def test_split_checks_lengths() -> None:
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        data.Split(np.zeros((3, 28, 28), np.uint8), np.zeros(2, np.int64), {})
    assert len(data.CLASS_NAMES) == 10 and data.CLASS_NAMES[9] == "Ankle boot"


# --- bad IDX -------------------------------------------------------------------------------------


def _good_images() -> bytes:
    return idx_bytes(np.zeros((2, 28, 28), np.uint8))


def _corrupt_deflate() -> bytes:
    blob = bytearray(gzip.compress(_good_images()))
    blob[12:20] = b"\xff" * 8  # inside the deflate stream
    return bytes(blob)


BAD_IDX: dict[str, tuple[Callable[[], bytes], str]] = {
    "truncated gzip": (lambda: gzip.compress(_good_images())[:30], "truncated"),
    "garbage after gzip magic": (lambda: b"\x1f\x8b" + bytes(range(200)), "corrupt gzip"),
    "corrupt deflate stream": (_corrupt_deflate, "corrupt gzip"),
    "wrong magic": (
        lambda: idx_bytes(np.zeros((2, 28, 28), np.uint8), magic=0x00000D03),
        "magic 0x00000d03",
    ),
    "wrong dims": (lambda: idx_bytes(np.zeros((2, 27, 28), np.uint8)), "27x28"),
    "payload too short": (lambda: _good_images()[:-1], "1567 bytes"),
    "payload too long": (lambda: _good_images() + b"\x00", "1569 bytes"),
    "header cut short": (lambda: _good_images()[:10], "truncated IDX header"),
    "shorter than a magic": (lambda: b"\x00\x00", "too short"),
    "empty file": (lambda: b"", "empty file"),
}


@pytest.mark.parametrize("case", list(BAD_IDX))
def test_read_idx_rejects_bad_files(tmp_path: Path, case: str) -> None:
    make, word = BAD_IDX[case]
    path = tmp_path / "bad-images-idx3-ubyte.gz"
    path.write_bytes(make())
    with pytest.raises(DataError) as err:
        data.read_idx(path)
    assert_one_line_error(err, path, word)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        data.read_idx(tmp_path / "nope")
    assert_one_line_error(err, tmp_path / "nope", "not found")


def test_load_idx_split_count_mismatch(tmp_path: Path, rng: np.random.Generator) -> None:
    write_idx_dir(tmp_path, rng, gz=False)
    labels = tmp_path / "train-labels-idx1-ubyte"
    write_file(labels, idx_bytes(np.zeros(5, np.uint8)), gz=False)
    with pytest.raises(DataError) as err:
        data.load_idx_split(tmp_path, "train", verify=False)
    assert_one_line_error(err, labels, "5 labels for 6 images", "must match")


def test_load_idx_split_label_out_of_range(tmp_path: Path, rng: np.random.Generator) -> None:
    write_idx_dir(tmp_path, rng)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_file(labels, idx_bytes(np.array([1, 2, 10, 3], np.uint8)), gz=True)
    with pytest.raises(DataError) as err:
        data.load_idx_split(tmp_path, "test", verify=False)
    assert_one_line_error(err, labels, "label 10 at index 2 outside 0..9")


def test_load_idx_split_checksum_mismatch(tmp_path: Path, rng: np.random.Generator) -> None:
    write_idx_dir(tmp_path, rng)
    with pytest.raises(DataError) as err:
        data.load_idx_split(tmp_path, "train")
    expected = data.OFFICIAL_SHA256["train-images-idx3-ubyte"]
    path = tmp_path / "train-images-idx3-ubyte.gz"
    assert_one_line_error(err, path, "SHA-256 of payload", expected, "not the official")


def test_load_idx_split_swapped_files(tmp_path: Path, rng: np.random.Generator) -> None:
    write_idx_dir(tmp_path, rng)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    images.write_bytes((tmp_path / "train-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(DataError) as err:
        data.load_idx_split(tmp_path, "train", verify=False)
    assert_one_line_error(err, images, "expected images")


def test_load_idx_split_missing_file_and_bad_split(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        data.load_idx_split(tmp_path, "train")
    assert_one_line_error(err, tmp_path / "train-images-idx3-ubyte", "not found")
    with pytest.raises(ValueError, match="'valid'"):
        data.load_idx_split(tmp_path, "valid")


# --- bad CSV -------------------------------------------------------------------------------------


def _set_cell(row: int, column: int, value: str) -> Callable[[list[list[str]]], None]:
    def mutate(rows: list[list[str]]) -> None:
        rows[row][column] = value

    return mutate


def _drop_cell(rows: list[list[str]]) -> None:
    rows[1].pop()


# (mutation of 4 data rows, words in the message); the header is line 1, so row i is line i + 2.
BAD_CSV: dict[str, tuple[Callable[[list[list[str]]], None], tuple[str, ...]]] = {
    "too few columns": (_drop_cell, ("line 3 has 784 columns", "expected 785")),
    "too many columns": (lambda rows: rows[2].append("0"), ("line 4 has 786 columns",)),
    "non-numeric": (_set_cell(0, 7, "abc"), ("line 2, column 8", "non-numeric cell 'abc'")),
    "NaN": (_set_cell(3, 100, "nan"), ("line 5, column 101", "NaN")),
    "empty cell": (_set_cell(1, 5, ""), ("line 3, column 6", "empty cell")),
    "blank cell": (_set_cell(1, 5, "  "), ("line 3, column 6", "empty cell")),
    "non-integer": (_set_cell(2, 3, "3.5"), ("line 4, column 4", "non-integer value '3.5'")),
    "pixel 256": (_set_cell(2, 784, "256"), ("line 4, column 785", "pixel 256 outside 0..255")),
    "pixel -1": (_set_cell(0, 1, "-1"), ("line 2, column 2", "pixel -1 outside 0..255")),
    "pixel 70000": (_set_cell(1, 9, "70000"), ("line 3, column 10", "pixel 70000 outside")),
    "label 10": (_set_cell(3, 0, "10"), ("line 5, column 1", "label 10 outside 0..9")),
    "label -1": (_set_cell(1, 0, "-1"), ("line 3, column 1", "label -1 outside 0..9")),
    "label 1.5": (_set_cell(1, 0, "1.5"), ("line 3, column 1", "non-integer")),
}


@pytest.mark.parametrize("case", list(BAD_CSV))
def test_read_csv_rejects_bad_cells(tmp_path: Path, rng: np.random.Generator, case: str) -> None:
    mutate, words = BAD_CSV[case]
    rows = csv_rows(rng, 4)
    mutate(rows)
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError) as err:
        data.read_csv(path)
    assert_one_line_error(err, path, *words)


@pytest.mark.parametrize(
    ("text", "word"),
    [("", "empty file"), ("\n \n", "empty file"), (",".join(HEADER) + "\n", "header only")],
)
def test_read_csv_rejects_empty(tmp_path: Path, text: str, word: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        data.read_csv(path)
    assert_one_line_error(err, path, word)


# --- finding the data ----------------------------------------------------------------------------


def write_csv_dir(directory: Path, rng: np.random.Generator) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_csv(directory / "fashion-mnist_train.csv", csv_rows(rng, 3))
    write_csv(directory / "fashion-mnist_test.csv", csv_rows(rng, 2), header=False)
    return directory


def test_find_explicit_missing_dir(isolated: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        data.find_data_dir(tmp_path / "nowhere")
    assert_one_line_error(err, tmp_path / "nowhere", "not a directory")


def test_find_explicit_incomplete_dir_does_not_fall_back(
    isolated: Path, tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_idx_dir(data.DEBIAN_DIR, rng)  # a good fallback exists, and must not be used
    partial = tmp_path / "partial"
    write_idx_dir(partial, rng)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        data.find_data_dir(partial)
    assert_one_line_error(err, partial, "missing t10k-labels-idx1-ubyte", "fashion-mnist_train.csv")


def test_find_env_var_and_explicit_order(
    isolated: Path, tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = write_csv_dir(tmp_path / "env", rng)
    explicit = tmp_path / "explicit"
    write_idx_dir(explicit, rng)
    monkeypatch.setenv(data.ENV_VAR, str(from_env))
    assert data.find_data_dir() == from_env
    assert data.find_data_dir(str(explicit)) == explicit


def test_find_env_var_pointing_nowhere(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "typo"))
    with pytest.raises(DataError) as err:
        data.find_data_dir()
    assert_one_line_error(err, tmp_path / "typo", "not a directory", data.ENV_VAR)


def test_find_debian_then_cache(isolated: Path, rng: np.random.Generator) -> None:
    write_csv_dir(isolated, rng)
    assert data.find_data_dir() == isolated
    write_idx_dir(data.DEBIAN_DIR, rng, gz=False)
    assert data.find_data_dir() == data.DEBIAN_DIR


def test_find_offline_with_nothing(isolated: Path) -> None:
    with pytest.raises(DataError) as err:
        data.find_data_dir()
    message = str(err.value)
    assert "\n" not in message and message.startswith("Fashion-MNIST:")
    for way in ("--data-dir DIR", "FASHION_TCN_DATA=DIR", "apt install dataset-fashion-mnist"):
        assert way in message, message
    assert "download from the mirrors failed" in message
    assert UNREACHABLE in message
    assert not isolated.exists() or not any(isolated.iterdir())


def test_find_without_download_never_touches_the_network(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("urlopen called")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(DataError, match="download is off") as err:
        data.find_data_dir(may_download=False)
    assert "--data-dir" in str(err.value)


# --- downloading ---------------------------------------------------------------------------------


def serve_idx(directory: Path, rng: np.random.Generator) -> dict:
    return write_idx_dir(directory, rng, gz=True)


def test_download_checksum_mismatch_leaves_nothing(
    tmp_path: Path, rng: np.random.Generator, server: tuple[str, Path]
) -> None:
    url, root = server
    serve_idx(root, rng)  # tiny files: their hashes are not the official ones
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        data.download(cache, mirrors=[url], timeout=5)
    assert_one_line_error(err, cache / "train-images-idx3-ubyte.gz", "SHA-256", "every mirror")
    assert list(cache.iterdir()) == []


def test_download_success_falls_through_bad_mirrors(
    tmp_path: Path,
    rng: np.random.Generator,
    server: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, root = server
    arrays = serve_idx(root / "good", rng)
    serve_idx(root / "bad", np.random.default_rng(1))  # well-formed, but the wrong data
    monkeypatch.setattr(data, "OFFICIAL_SHA256", tiny_hashes(arrays))
    cache = tmp_path / "cache"
    mirrors = [UNREACHABLE, url + "missing/", url + "bad", url + "good/"]
    assert data.download(cache, mirrors=mirrors, timeout=5) == cache
    names = sorted(path.name for path in cache.iterdir())
    assert names == sorted(f"{name}.gz" for name in data.OFFICIAL_SHA256)
    loaded = data.load_idx_split(cache, "train")  # verified against the patched hashes
    np.testing.assert_array_equal(loaded.images, arrays["train"][0])
    assert data.download(cache, mirrors=[], timeout=5) == cache  # present files are kept


def test_download_dropped_connection_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Dropping:
        def __init__(self) -> None:
            self.sent = False

        def read(self, size: int = -1) -> bytes:
            if self.sent:
                raise ConnectionResetError("connection reset by peer")
            self.sent = True
            return b"\x1f\x8b" + b"\x00" * 1000

        def __enter__(self) -> Dropping:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Dropping())
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="connection reset"):
        data.download(cache, mirrors=["http://a/", "http://b/"])
    assert list(cache.iterdir()) == []


def test_load_fashion_mnist_downloads_into_cache(
    isolated: Path,
    rng: np.random.Generator,
    server: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, root = server
    arrays = serve_idx(root, rng)
    monkeypatch.setattr(data, "OFFICIAL_SHA256", tiny_hashes(arrays))
    monkeypatch.setattr(data, "MIRRORS", (url,))
    train, test = data.load_fashion_mnist()
    assert data.find_data_dir() == isolated
    assert train.files["images"] == str(isolated / "train-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(test.labels, arrays["test"][1])


def test_load_fashion_mnist_from_csv(
    isolated: Path, tmp_path: Path, rng: np.random.Generator
) -> None:
    train, test = data.load_fashion_mnist(write_csv_dir(tmp_path / "kaggle", rng))
    assert (len(train), len(test)) == (3, 2)
    assert train.files["csv"].endswith("fashion-mnist_train.csv")


# --- the real data -------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    train, test = data.load_fashion_mnist()
    for split, n, prefix in ((train, 60000, "train"), (test, 10000, "t10k")):
        assert split.images.shape == (n, 28, 28) and split.images.dtype == np.uint8
        assert split.labels.shape == (n,) and split.labels.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(split.labels, minlength=10), [n // 10] * 10)
        assert split.files["images_sha256"] == data.OFFICIAL_SHA256[f"{prefix}-images-idx3-ubyte"]
        assert split.files["labels_sha256"] == data.OFFICIAL_SHA256[f"{prefix}-labels-idx1-ubyte"]


@pytest.mark.slow
def test_real_test_split_csv_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    test = data.load_idx_split(data.find_data_dir(may_download=False), "test")
    table = np.concatenate([test.labels[:, None], test.images.reshape(len(test), -1)], axis=1)
    path = tmp_path / "fashion-mnist_test.csv"
    np.savetxt(path, table, fmt="%d", delimiter=",", header=",".join(HEADER), comments="")
    from_csv = data.read_csv(path)
    np.testing.assert_array_equal(from_csv.images, test.images)
    np.testing.assert_array_equal(from_csv.labels, test.labels)
