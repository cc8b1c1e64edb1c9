"""Find, verify and load Fashion-MNIST from IDX files or Kaggle-style CSVs.

Every failure is a `DataError` with a one-line message that starts with the file it is about,
so the CLI can print it as is. Loading never trusts a file silently: IDX headers, sizes and labels
are checked, and the official files are verified by the SHA-256 of their decompressed payload (the
Debian package re-gzips them, so hashes of the .gz files would differ while the data does not).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import math
import os
import shutil
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
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
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # `apt install dataset-fashion-mnist`
ENV_VAR = "FASHION_TCN_DATA"
MIRRORS: tuple[str, ...] = (
    "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
)
# SHA-256 of the decompressed files: equal for the official .gz, Debian's re-gzipped copies and raw.
OFFICIAL_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
CSV_NAMES = {"train": "fashion-mnist_train.csv", "test": "fashion-mnist_test.csv"}

_PREFIXES = {"train": "train", "test": "t10k"}  # the IDX files call the test split "t10k"
_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_SIDE = 28
_CSV_COLUMNS = 1 + _SIDE * _SIDE  # label, then the pixels row by row
_CHUNK = 1 << 20
_HOW_TO_PROVIDE = (
    f"provide it with --data-dir DIR, {ENV_VAR}=DIR, or `apt install dataset-fashion-mnist`"
)


class DataError(ValueError):
    """A data file is missing, corrupt or malformed; the message is one line naming the file."""

    def __init__(self, message: str) -> None:
        # One line always, even when it quotes an OS or network error that carries newlines.
        super().__init__(" ".join(message.split()))


@dataclass(frozen=True, eq=False)
class Split:
    """One split of Fashion-MNIST and the files it came from (for run provenance)."""

    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) int64 in 0..9
    files: dict[str, str]  # {"images": path, "images_sha256": ..., ...} or {"csv": ..., ...}

    def __post_init__(self) -> None:
        if self.images.ndim != 3 or self.images.shape[1:] != (_SIDE, _SIDE):
            raise ValueError(f"images must be (N, 28, 28), got {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


def _read_payload(path: Path) -> tuple[bytearray, str]:
    """Read a file, gunzipping it when it starts with the gzip magic, and hash it on the way.

    The SHA-256 is of the decompressed bytes, so .gz and raw copies agree, in a single pass.
    A bytearray keeps the arrays built on it writable without another copy.
    """
    digest = hashlib.sha256()
    chunks = []
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"  # by content: names lie
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
            with stream:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
                    chunks.append(chunk)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except EOFError:
        raise DataError(f"{path}: truncated gzip data (the file ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{path}: corrupt gzip data ({err})") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    return bytearray().join(chunks), digest.hexdigest()


def _parse_idx(path: Path, payload: bytearray) -> np.ndarray:
    """Check an IDX header against the payload and view the bytes as an array."""
    if not payload:
        raise DataError(f"{path}: empty file")
    if len(payload) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(payload)} bytes)")
    magic = int.from_bytes(payload[:4], "big")
    if magic not in (_IMAGES_MAGIC, _LABELS_MAGIC):
        raise DataError(
            f"{path}: not an IDX file of bytes: magic 0x{magic:08x}, expected "
            f"0x{_IMAGES_MAGIC:08x} (images) or 0x{_LABELS_MAGIC:08x} (labels)"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise DataError(f"{path}: truncated IDX header ({len(payload)} of {header} bytes)")
    dims = tuple(int.from_bytes(payload[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if ndim == 3 and dims[1:] != (_SIDE, _SIDE):
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28")
    expected = math.prod(dims)
    if len(payload) - header != expected:
        raise DataError(
            f"{path}: payload is {len(payload) - header} bytes after the header, "
            f"expected {expected} for shape {dims}"
        )
    return np.frombuffer(payload, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of images (N, 28, 28) or labels (N,), both uint8, gzipped or raw."""
    path = Path(path)
    return _parse_idx(path, _read_payload(path)[0])


def _idx_file(data_dir: Path, name: str) -> Path | None:
    """The .gz copy of an IDX file if there is one, else the raw one, else None."""
    for candidate in (data_dir / f"{name}.gz", data_dir / name):
        if candidate.is_file():
            return candidate
    return None


def load_idx_split(data_dir: str | Path, split: str, *, verify: bool = True) -> Split:
    """Load "train" or "test" from IDX files, checking each against OFFICIAL_SHA256 if `verify`."""
    if split not in _PREFIXES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    data_dir = Path(data_dir)
    arrays: dict[str, np.ndarray] = {}
    files: dict[str, str] = {}
    for kind, ndim in (("images", 3), ("labels", 1)):
        name = f"{_PREFIXES[split]}-{kind}-idx{ndim}-ubyte"
        path = _idx_file(data_dir, name)
        if path is None:
            raise DataError(f"{data_dir / name}[.gz]: file not found")
        payload, sha = _read_payload(path)
        array = _parse_idx(path, payload)
        if array.ndim != ndim:
            raise DataError(f"{path}: holds {array.ndim}-d data, expected {kind}")
        arrays[kind] = array
        files[kind] = os.path.abspath(path)
        files[f"{kind}_sha256"] = sha
    images, labels = arrays["images"], arrays["labels"]
    # structure first, checksums last: a wrong count or label is named as what it is
    if len(images) != len(labels):
        raise DataError(
            f"{files['labels']}: {len(labels)} labels for {len(images)} images in "
            f"{files['images']} (the counts must match)"
        )
    bad = np.flatnonzero(labels >= len(CLASS_NAMES))
    if len(bad):
        index = int(bad[0])
        raise DataError(f"{files['labels']}: label {labels[index]} at index {index} outside 0..9")
    loaded = Split(images=images, labels=labels.astype(np.int64), files=files)
    if verify:
        verify_official(loaded)
    return loaded


def verify_official(split: Split) -> None:
    """Check a split loaded from IDX files against the official SHA-256 of each file."""
    for kind in ("images", "labels"):
        path, sha = split.files[kind], split.files[f"{kind}_sha256"]
        expected = OFFICIAL_SHA256[Path(path).name.removesuffix(".gz")]
        if sha != expected:
            raise DataError(
                f"{path}: SHA-256 of payload is {sha}, expected {expected} "
                "(corrupt or not the official Fashion-MNIST)"
            )


def is_number(cell: str) -> bool:
    """Whether a CSV cell reads as a number (a first row that does not is a header)."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _cell_problem(cell: str, column: int) -> str | None:
    """What is wrong with one CSV cell (column 1 is the label), or None if nothing."""
    text = cell.strip()
    if not text:
        return "empty cell"
    try:
        value = int(text)
    except ValueError:
        if not is_number(text):
            return f"non-numeric cell {text!r}"
        return "NaN cell" if math.isnan(float(text)) else f"non-integer value {text!r}"
    kind, high = ("label", 9) if column == 1 else ("pixel", 255)
    return None if 0 <= value <= high else f"{kind} {value} outside 0..{high}"


def _raise_bad_cell(path: Path, rows: list[tuple[int, str]], reason: Exception) -> NoReturn:
    """Find the first bad cell after the fast parse failed; slow, so only run on failure."""
    for line_number, line in rows:
        cells = line.split(",")
        try:
            values = [int(cell) for cell in cells]
        except ValueError:
            values = []
        if values and values[0] <= 9 and min(values) >= 0 and max(values) <= 255:
            continue  # this line is fine; the bad cell is further down
        for column, cell in enumerate(cells, 1):
            problem = _cell_problem(cell, column)
            if problem:
                raise DataError(f"{path}: line {line_number}, column {column}: {problem}")
    raise DataError(f"{path}: cannot parse ({reason})")


def read_csv(path: str | Path) -> Split:
    """Read a Kaggle-style CSV: label, then 784 pixels per line, with or without a header row."""
    path = Path(path)
    payload, sha = _read_payload(path)
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    rows = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not rows:
        raise DataError(f"{path}: empty file")
    for number, line in rows:
        columns = line.count(",") + 1
        if columns != _CSV_COLUMNS:
            raise DataError(
                f"{path}: line {number} has {columns} columns, expected 785 (label + 784 pixels)"
            )
    if not any(is_number(cell) for cell in rows[0][1].split(",")):  # "label,pixel1,..."
        rows = rows[1:]
    if not rows:
        raise DataError(f"{path}: header only, no data rows")
    try:
        # int16 parses ~7x faster than float and still overflows loudly on absurd values.
        table = np.loadtxt(
            [line for _, line in rows], delimiter=",", dtype=np.int16, comments=None, ndmin=2
        )
    except ValueError as err:
        _raise_bad_cell(path, rows, err)
    highest = np.full(_CSV_COLUMNS, 255)
    highest[0] = len(CLASS_NAMES) - 1
    bad = np.argwhere((table < 0) | (table > highest))
    if len(bad):
        row, column = int(bad[0][0]), int(bad[0][1]) + 1
        problem = _cell_problem(str(table[row, column - 1]), column)
        raise DataError(f"{path}: line {rows[row][0]}, column {column}: {problem}")
    labels, pixels = table[:, 0], table[:, 1:]
    return Split(
        images=pixels.astype(np.uint8).reshape(-1, _SIDE, _SIDE),
        labels=labels.astype(np.int64),
        files={"csv": os.path.abspath(path), "csv_sha256": sha},
    )


def _has_idx(data_dir: Path) -> bool:
    return all(_idx_file(data_dir, name) for name in OFFICIAL_SHA256)


def _has_csv(data_dir: Path) -> bool:
    return all((data_dir / name).is_file() for name in CSV_NAMES.values())


def _require_data(data_dir: Path, source: str) -> Path:
    """Return a directory the user named, or say what it lacks: a typo must not fall back."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: not a directory{source}")
    if not os.access(data_dir, os.R_OK | os.X_OK):
        raise DataError(f"{data_dir}: cannot be read (permission denied){source}")
    if not (_has_idx(data_dir) or _has_csv(data_dir)):
        missing = [name for name in OFFICIAL_SHA256 if _idx_file(data_dir, name) is None]
        csvs = [name for name in CSV_NAMES.values() if (data_dir / name).is_file()]
        if csvs and len(missing) < len(OFFICIAL_SHA256):
            raise DataError(
                f"{data_dir}: holds {', '.join(csvs)} and some IDX files, but neither format "
                f"for both splits: use one (IDX missing {', '.join(missing)}; CSV missing "
                f"{', '.join(n for n in CSV_NAMES.values() if n not in csvs)})"
            )
        if csvs:
            other = next(name for name in CSV_NAMES.values() if name not in csvs)
            raise DataError(f"{data_dir}: has {csvs[0]} but not {other}{source}")
        raise DataError(
            f"{data_dir}: no Fashion-MNIST here{source}: missing {', '.join(missing)} (.gz or raw),"
            f" and no {' and '.join(CSV_NAMES.values())}"
        )
    return data_dir


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fashion-tcn"


def _fetch(url: str, final: Path, expected: str, timeout: float) -> None:
    """Download `url` to `final` through a temp file beside it, renamed only once verified."""
    handle, temp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as reply:
            shutil.copyfileobj(reply, out, _CHUNK)
        sha = _read_payload(Path(temp))[1]
        if sha != expected:
            raise DataError(
                f"{url}: SHA-256 of payload is {sha}, expected {expected} "
                "(corrupt or not the official Fashion-MNIST)"
            )
        os.replace(temp, final)  # atomic: the final name never holds a partial file
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def download(cache_dir: Path, *, mirrors: Sequence[str] = MIRRORS, timeout: float = 30) -> Path:
    """Download the four IDX files into `cache_dir`, trying each mirror in turn; return the dir.

    Files already there are kept: they only ever appear under their name after verification.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, expected in OFFICIAL_SHA256.items():
        final = cache_dir / f"{name}.gz"
        if final.is_file():
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + f"/{name}.gz"
            try:
                _fetch(url, final, expected, timeout)
                break
            except (OSError, http.client.HTTPException, DataError) as err:
                errors.append(f"{url}: {err}")
        else:
            raise DataError(f"{final}: download failed from every mirror ({'; '.join(errors)})")
    return cache_dir


def find_data_dir(data_dir: str | Path | None = None, *, may_download: bool = True) -> Path:
    """Locate Fashion-MNIST: data_dir, $FASHION_TCN_DATA, the Debian package, the cache, a download.

    A directory the user names (argument or environment) is used or rejected, never skipped.
    """
    if data_dir is not None:
        return _require_data(Path(data_dir), "")
    if os.environ.get(ENV_VAR):
        return _require_data(Path(os.environ[ENV_VAR]), f" (from {ENV_VAR})")
    cache = _cache_dir()
    for candidate in (DEBIAN_DIR, cache):
        if _has_idx(candidate) or _has_csv(candidate):
            return candidate
    if not may_download:
        raise DataError(
            f"Fashion-MNIST: not in {DEBIAN_DIR} or {cache}, and download is off; {_HOW_TO_PROVIDE}"
        )
    try:
        return download(cache, mirrors=MIRRORS)
    except DataError as err:
        raise DataError(
            f"Fashion-MNIST: not in {DEBIAN_DIR} or {cache}, and the download from the mirrors "
            f"failed ({err}); {_HOW_TO_PROVIDE}"
        ) from err


def load_fashion_mnist(
    data_dir: str | Path | None = None, *, may_download: bool = True
) -> tuple[Split, Split]:
    """Return (train, test), from verified IDX files if the directory has them, else the CSVs.

    The same files are read once per process (the CLI checks the data before TensorFlow loads,
    then trains on it): the cache key holds each file's size and modification time.
    """
    found = find_data_dir(data_dir, may_download=may_download).resolve()
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(found.iterdir()))
    return _load(found, stamp)


@functools.lru_cache(maxsize=1)
def _load(found: Path, stamp: tuple) -> tuple[Split, Split]:
    """The splits, read-only: every caller shares these arrays."""
    if _has_idx(found):  # every file's structure first, then the checksums
        train, test = (load_idx_split(found, name, verify=False) for name in ("train", "test"))
        verify_official(train)
        verify_official(test)
    else:
        train, test = (read_csv(found / CSV_NAMES[name]) for name in ("train", "test"))
    for split in (train, test):
        split.images.setflags(write=False)
        split.labels.setflags(write=False)
    return train, test
