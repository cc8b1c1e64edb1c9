"""Atomic writes: durable renames for files, links followed, devices and FIFOs written through."""

import errno
import os
import stat
import subprocess
import sys
import threading

import pytest

import fashion_tcn.files as files
from fashion_tcn.files import atomic_path, write_text


def test_a_file_is_replaced_and_flushed_with_its_folder(tmp_path, monkeypatch):
    flushed = []
    real = files._fsync
    monkeypatch.setattr(files, "_fsync", lambda path: (flushed.append(path), real(path)))
    target = tmp_path / "metrics.json"
    target.write_text("old")
    write_text(target, "new")
    assert target.read_text() == "new" and stat.S_ISREG(target.lstat().st_mode)
    assert len(flushed) == 2 and flushed[0].name.endswith(".partial.json")
    assert flushed[1] == tmp_path  # the rename reaches the disk too
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_symlink_is_followed_to_the_file_it_names(tmp_path):
    real = tmp_path / "real.html"
    real.write_text("old")
    link = tmp_path / "link.html"
    link.symlink_to(real)
    write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_a_fifo_is_written_through_not_replaced(tmp_path):
    fifo = tmp_path / "pipe.html"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    write_text(fifo, "page")
    reader.join(timeout=10)
    assert received == ["page"] and stat.S_ISFIFO(fifo.lstat().st_mode)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_device_is_an_error_naming_it_and_stays_a_device():
    with pytest.raises(OSError) as caught:
        write_text("/dev/full", "x" * 100_000)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == "/dev/full"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_dev_stdout_receives_the_bytes():
    code = "from fashion_tcn.files import write_text; write_text('/dev/stdout', 'hello')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "hello", result.stderr


def test_a_failed_block_leaves_neither_file_nor_partial(tmp_path):
    target = tmp_path / "model.keras"
    with pytest.raises(RuntimeError), atomic_path(target) as partial:
        partial.write_bytes(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
