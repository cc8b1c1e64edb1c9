"""Writing files so that a crash, a kill, a power loss or a full disk never leaves a half-written
file under its real name: every artifact is written beside its destination, flushed to disk, then
renamed over it, and the rename itself is flushed (the folder's entry)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _named(error: OSError, partial: Path, path: Path) -> OSError:
    """The error naming the file the user knows, not the partial one."""
    if error.filename is None or Path(error.filename) == partial:
        return OSError(error.errno, error.strerror, str(path))
    return error


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path with `path`'s suffix (Keras, NumPy and matplotlib read the format from
    it) for the block to write; when the block ends it becomes `path`. A regular file (or a new
    one) is replaced by a durable rename; a symlink is followed to the file it names; a target
    that is not a regular file (a device such as /dev/full or /dev/stdout, a FIFO) is written
    through, never replaced. The partial file is removed if the block fails."""
    path = Path(path)
    special = path.exists() and not stat.S_ISREG(path.stat().st_mode)  # stat follows links
    if special and path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
    if not special and path.is_symlink():
        path = path.resolve()
    folder = Path(tempfile.gettempdir()) if special else path.parent
    partial = folder / f".{path.stem}.{os.getpid()}.partial{path.suffix}"
    try:
        yield partial
        if special:
            with partial.open("rb") as source, path.open("wb") as target:
                shutil.copyfileobj(source, target)
        else:
            _fsync(partial)
            os.replace(partial, path)
            _fsync(path.parent)
    except OSError as error:  # a full disk or device: name the file the user knows
        raise _named(error, partial, path) from None
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """`Path.write_text`, atomically."""
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return Path(path)
