"""Writing files so that a crash, a kill or a full disk never leaves a half-written file under
its real name: every artifact is written beside its destination, then renamed over it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path`, with its suffix (Keras, NumPy and matplotlib read the
    format from it), renamed over `path` when the block ends; removed if the block fails."""
    path = Path(path)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        yield partial
        os.replace(partial, path)
    except OSError as error:  # a full disk: name the file the user knows, not the partial one
        if error.filename is not None and Path(error.filename) == partial:
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """`Path.write_text`, atomically."""
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return Path(path)
