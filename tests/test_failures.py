"""The catalogue of bad inputs and faults (issue 16): each case ends with its exit code, exactly
one stderr line that names the file or field and the problem, no traceback, and nothing lost
(files that existed before are byte-identical after; good inputs beside bad ones still served).

Cases run in-process through `cli.main` (an uncaught exception fails the case: that would be a
traceback); the few that are about the whole process (start-up noise, argparse, a missing
backend) run `python -m fashion_tcn.cli` in a subprocess.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import fake_images
from PIL import Image

from fashion_tcn.cli import main

pytestmark = pytest.mark.minutes(1)

SMALL = ["--filters", "8", "--dilations", "1,2,4,8", "--stacks", "1", "--dropout", "0"]
SMALL += ["--batch-size", "32", "--quiet", "--epochs", "1"]


@dataclass
class Ctx:
    """What a case builds its command from: a scratch folder, the tiny data, a copy of a run."""

    tmp: Path
    data: Path
    run_source: Path

    def run(self) -> Path:
        copy = self.tmp / "run"
        if not copy.exists():
            shutil.copytree(self.run_source, copy)
        return copy

    def file(self, name: str, content: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
        return path

    def csv_data(self, train_rows: str | bytes | None = None) -> Path:
        """A data folder of Kaggle CSVs: the tiny test CSV and, if given, this train CSV."""
        folder = self.tmp / "csvdata"
        folder.mkdir(exist_ok=True)
        shutil.copy(self.data / "fashion-mnist_test.csv", folder)
        if train_rows is None:
            shutil.copy(self.data / "fashion-mnist_train.csv", folder)
        else:
            self.file("csvdata/fashion-mnist_train.csv", train_rows)
        return folder

    def idx_data(self, **damage: bytes) -> Path:
        """A folder of the four gzipped IDX files (10 images each), `damage` replacing some."""
        folder = self.tmp / "idxdata"
        folder.mkdir(exist_ok=True)
        labels = np.arange(10, dtype=np.uint8)
        files = {
            "train-images-idx3-ubyte": _idx(fake_images(labels, 0)),
            "train-labels-idx1-ubyte": _idx(labels),
            "t10k-images-idx3-ubyte": _idx(fake_images(labels, 1)),
            "t10k-labels-idx1-ubyte": _idx(labels),
        }
        for name, payload in {**files, **damage}.items():
            (folder / f"{name.replace('_', '-')}.gz").write_bytes(gzip.compress(payload))
        return folder


def _idx(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = magic if magic is not None else 0x800 | array.ndim
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _png(size: tuple[int, int] = (28, 28), mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 200 if mode == "L" else 1).save(buffer, format="PNG")
    return buffer.getvalue()


def _damaged_png() -> bytes:
    """A PNG whose image data chunk is garbage behind a valid header."""
    good = bytearray(_png((64, 64)))
    start = good.index(b"IDAT") + 4
    good[start : start + 20] = b"\x00" * 20
    return bytes(good)


def _csv_row(label: int = 0, pixel: str = "0") -> str:
    return ",".join([str(label), *[pixel] * 784]) + "\n"


HEADER = "label," + ",".join(f"pixel{i}" for i in range(1, 785)) + "\n"
Case = tuple[Callable[[Ctx], list[str]], int, str]

CASES: dict[str, Case] = {
    # flags outside their domain
    "epochs 0": (lambda c: ["train", "--epochs", "0"], 2, "epochs must be >= 1"),
    "epochs word": (lambda c: ["train", "--epochs", "ten"], 2, "--epochs: invalid int value"),
    "lr negative": (lambda c: ["train", "--lr", "-1"], 2, "lr must be > 0"),
    "lr nan": (lambda c: ["train", "--lr", "nan"], 2, "lr must be > 0"),
    "batch size 0": (lambda c: ["train", "--batch-size", "0"], 2, "batch_size must be >= 1"),
    "seed negative": (lambda c: ["train", "--seed", "-1"], 2, "seed must be in [0, 2**32)"),
    "seed huge": (lambda c: ["train", "--seed", str(2**40)], 2, "seed must be in [0, 2**32)"),
    "anytime negative": (
        lambda c: ["train", "--anytime-loss", "-1"],
        2,
        "anytime_loss must be >= 0",
    ),
    "anytime on lstm": (
        lambda c: ["train", "--model", "lstm", "--anytime-loss", "0.5"],
        2,
        "anytime_loss needs a causal TCN",
    ),
    "label smoothing 1.5": (
        lambda c: ["train", "--label-smoothing", "1.5"],
        2,
        "label_smoothing must be in [0, 1)",
    ),
    "ema 1": (lambda c: ["train", "--ema", "1"], 2, "ema must be in [0, 1)"),
    "dropout 1": (lambda c: ["train", "--dropout", "1"], 2, "dropout must be in [0, 1)"),
    "dropout nan": (lambda c: ["train", "--dropout", "nan"], 2, "dropout must be in [0, 1)"),
    "filters 0": (lambda c: ["train", "--filters", "0"], 2, "filters must be >= 1"),
    "kernel 1": (lambda c: ["train", "--kernel-size", "1"], 2, "kernel_size must be >= 2"),
    "dilations word": (lambda c: ["train", "--dilations", "1,x"], 2, "comma-separated integers"),
    "dilations 0": (lambda c: ["train", "--dilations", "0,1"], 2, "dilations must be"),
    "stacks 0": (lambda c: ["train", "--stacks", "0"], 2, "stacks must be >= 1"),
    "units 0": (lambda c: ["train", "--units", "0"], 2, "units must be >= 1"),
    "val fraction 0.9": (lambda c: ["train", "--val-fraction", "0.9"], 2, "val_fraction"),
    "limit train 5": (lambda c: ["train", "--limit-train", "5"], 2, "limit_train must be >= 10"),
    "translate 2": (lambda c: ["train", "--translate", "2"], 2, "translate must be in [0, 0.5]"),
    "flip negative": (lambda c: ["train", "--flip", "-0.1"], 2, "[augment] flip must be in [0, 1]"),
    "rotate inf": (lambda c: ["train", "--rotate", "inf"], 2, "rotate must be in [0, 180]"),
    "clipnorm 0": (lambda c: ["train", "--clipnorm", "0"], 2, "clipnorm must be > 0"),
    "weight decay negative": (
        lambda c: ["train", "--weight-decay", "-1"],
        2,
        "weight_decay must be >= 0",
    ),
    "momentum 2": (lambda c: ["train", "--momentum", "2"], 2, "momentum must be in [0, 1)"),
    "early stopping negative": (
        lambda c: ["train", "--early-stopping", "-2"],
        2,
        "early_stopping must be >= 0",
    ),
    "unknown optimizer": (lambda c: ["train", "--optimizer", "adagrad"], 2, "invalid choice"),
    "unknown option": (lambda c: ["train", "--learning-rate", "1"], 2, "unrecognized arguments"),
    "no command": (lambda c: [], 2, "required: command"),
    "short receptive field": (
        lambda c: ["train", "--sequence", "pixels", "--dilations", "1,2"],
        2,
        "receptive field",
    ),
    "step filters on pixels": (
        lambda c: ["train", "--sequence", "pixels", "--step-filters", "8"],
        2,
        "step_filters convolves across a row",
    ),
    # config files
    "config missing": (lambda c: ["train", "--config", str(c.tmp / "no.yaml")], 2, "not found"),
    "config is a folder": (lambda c: ["train", "--config", str(c.tmp)], 2, "is a directory"),
    "config binary": (
        lambda c: ["train", "--config", str(c.file("b.yaml", b"\xff\xfe\x00\x81"))],
        2,
        "not a text file",
    ),
    "config yaml syntax": (
        lambda c: ["train", "--config", str(c.file("s.yaml", "model: [filters: 3"))],
        2,
        "not valid YAML",
    ),
    "config toml syntax": (
        lambda c: ["train", "--config", str(c.file("s.toml", "[model\nfilters = 3"))],
        2,
        "not valid TOML",
    ),
    "config a list": (
        lambda c: ["train", "--config", str(c.file("l.yaml", "- 1\n- 2\n"))],
        2,
        "expected a mapping of sections",
    ),
    "config unknown section": (
        lambda c: ["train", "--config", str(c.file("u.yaml", "optimiser: {lr: 1}\n"))],
        2,
        "unknown section(s) optimiser",
    ),
    "config unknown key": (
        lambda c: ["train", "--config", str(c.file("k.yaml", "model: {filter: 3}\n"))],
        2,
        "unknown key(s) filter in [model]",
    ),
    "config section not a mapping": (
        lambda c: ["train", "--config", str(c.file("m.yaml", "model: 3\n"))],
        2,
        "section 'model' must be a mapping",
    ),
    "config word for a number": (
        lambda c: ["train", "--config", str(c.file("w.yaml", "model: {filters: many}\n"))],
        2,
        "model.filters must be an integer, got 'many'",
    ),
    "config string for a list": (
        lambda c: ["train", "--config", str(c.file("d.yaml", "model: {dilations: '1,2'}\n"))],
        2,
        "model.dilations must be a list of integers",
    ),
    "config float for an integer": (
        lambda c: ["train", "--config", str(c.file("f.yaml", "train: {epochs: 2.5}\n"))],
        2,
        "train.epochs must be an integer, got 2.5",
    ),
    "config bool for an integer": (
        lambda c: ["train", "--config", str(c.file("t.toml", "[train]\nbatch_size = true\n"))],
        2,
        "train.batch_size must be an integer, got True",
    ),
    "config word for a rate": (
        lambda c: ["train", "--config", str(c.file("r.yaml", "train: {lr: fast}\n"))],
        2,
        "train.lr must be a number, got 'fast'",
    ),
    "config list for a string": (
        lambda c: ["train", "--config", str(c.file("a.yaml", "model: {activation: [relu]}\n"))],
        2,
        "model.activation must be a string",
    ),
    "config unknown activation": (
        lambda c: ["train", "--config", str(c.file("g.yaml", "model: {activation: relu6}\n"))],
        2,
        "unknown activation 'relu6'",
    ),
    # run directories
    "run dir is a file": (
        lambda c: ["train", "--run-dir", str(c.file("taken", "x"))],
        2,
        "exists and is not a directory",
    ),
    "run dir not empty": (
        lambda c: ["train", "--run-dir", str(c.run())],
        2,
        "run directory exists and is not empty",
    ),
    "resume without run dir": (lambda c: ["train", "--resume"], 2, "--resume needs --run-dir"),
    "resume missing run": (
        lambda c: ["train", "--resume", "--run-dir", str(c.tmp / "none")],
        2,
        "no such run directory to resume",
    ),
    "resume nothing to resume": (
        lambda c: ["train", "--resume", "--run-dir", str(c.file("half/config.yaml", "").parent)],
        2,
        "nothing to resume (no last.keras)",
    ),
    "resume truncated last.keras": (
        lambda c: ["train", "--resume", "--run-dir", str(_truncate(c.run() / "last.keras"))],
        2,
        "last.keras: damaged or not a Keras model file",
    ),
    "resume changed flag": (
        lambda c: ["train", "--resume", "--run-dir", str(c.run()), "--filters", "9"],
        2,
        "--filters cannot change",
    ),
    # data folders and files
    "data dir missing": (lambda c: ["data", "--data-dir", str(c.tmp / "x")], 2, "not a directory"),
    "data dir is a file": (
        lambda c: ["data", "--data-dir", str(c.file("f", "x"))],
        2,
        "not a directory",
    ),
    "data dir empty": (
        lambda c: ["data", "--data-dir", str(c.file("e/.keep", "").parent)],
        2,
        "no Fashion-MNIST here",
    ),
    "data csv and idx mixed": (
        lambda c: ["data", "--data-dir", str(_mixed(c))],
        2,
        "neither format for both splits",
    ),
    "data one csv only": (
        lambda c: ["data", "--data-dir", str(_one_csv(c))],
        2,
        "has fashion-mnist_train.csv but not fashion-mnist_test.csv",
    ),
    "idx label 10": (
        lambda c: [
            "data",
            "--data-dir",
            str(c.idx_data(train_labels_idx1_ubyte=_idx(np.array([10] * 10)))),
        ],
        2,
        "label 10 at index 0 outside 0..9",
    ),
    "idx count mismatch": (
        lambda c: [
            "data",
            "--data-dir",
            str(c.idx_data(train_labels_idx1_ubyte=_idx(np.zeros(7)))),
        ],
        2,
        "7 labels for 10 images",
    ),
    "idx wrong magic": (
        lambda c: [
            "data",
            "--data-dir",
            str(c.idx_data(t10k_images_idx3_ubyte=_idx(np.zeros((2, 28, 28)), 0x0D03))),
        ],
        2,
        "not an IDX file of bytes",
    ),
    "idx 27x27 images": (
        lambda c: [
            "data",
            "--data-dir",
            str(c.idx_data(t10k_images_idx3_ubyte=_idx(np.zeros((10, 27, 27))))),
        ],
        2,
        "images are 27x27, expected 28x28",
    ),
    "idx short payload": (
        lambda c: [
            "data",
            "--data-dir",
            str(c.idx_data(train_images_idx3_ubyte=_idx(np.zeros((10, 28, 28)))[:-5])),
        ],
        2,
        "payload is 7835 bytes after the header, expected 7840",
    ),
    "idx not official": (
        lambda c: ["data", "--data-dir", str(c.idx_data())],
        2,
        "SHA-256 of payload",
    ),
    "idx truncated gzip": (
        lambda c: ["data", "--data-dir", str(_truncated_gzip(c))],
        2,
        "truncated gzip data",
    ),
    "csv wrong columns": (
        lambda c: ["data", "--data-dir", str(c.csv_data(HEADER + "1,2,3\n"))],
        2,
        "line 2 has 3 columns, expected 785",
    ),
    "csv word in a cell": (
        lambda c: ["data", "--data-dir", str(c.csv_data(HEADER + _csv_row(pixel="dark")))],
        2,
        "line 2, column 2: non-numeric cell 'dark'",
    ),
    "csv pixel 300": (
        lambda c: ["data", "--data-dir", str(c.csv_data(HEADER + _csv_row(pixel="300")))],
        2,
        "pixel 300 outside 0..255",
    ),
    "csv label 10": (
        lambda c: ["data", "--data-dir", str(c.csv_data(HEADER + _csv_row(label=10)))],
        2,
        "label 10 outside 0..9",
    ),
    "csv binary": (
        lambda c: ["data", "--data-dir", str(c.csv_data(b"\x89PNG\r\n\x1a\n\xff\xfe" * 9))],
        2,
        "not a UTF-8 text file",
    ),
    "csv empty": (lambda c: ["data", "--data-dir", str(c.csv_data(""))], 2, "empty file"),
    "csv header only": (
        lambda c: ["data", "--data-dir", str(c.csv_data(HEADER))],
        2,
        "header only, no data rows",
    ),
    "train on bad data": (
        lambda c: ["train", "--data-dir", str(c.csv_data(HEADER + _csv_row(label=10)))],
        2,
        "label 10 outside 0..9",
    ),
    # evaluate, export, report on things that are not runs
    "evaluate missing": (lambda c: ["evaluate", str(c.tmp / "x")], 2, "not a run directory"),
    "evaluate a file": (lambda c: ["evaluate", str(c.file("f", "x"))], 2, "not a run directory"),
    "evaluate not a run": (lambda c: ["evaluate", str(c.tmp)], 2, "no config.yaml"),
    "evaluate truncated model": (
        lambda c: ["evaluate", str(_truncate(c.run() / "model.keras"))],
        2,
        "model.keras: damaged or not a Keras model file",
    ),
    "evaluate model not a zip": (
        lambda c: ["evaluate", str(_replace(c.run() / "model.keras", b"{}"))],
        2,
        "model.keras: damaged or not a Keras model file",
    ),
    "evaluate bad data dir": (
        lambda c: ["evaluate", str(c.run()), "--data-dir", str(c.tmp / "x")],
        2,
        "not a directory",
    ),
    "export not a run": (lambda c: ["export", str(c.tmp)], 2, "no config.yaml"),
    "export unknown format": (
        lambda c: ["export", str(c.run()), "--format", "pt"],
        2,
        "argument --format: invalid choice: 'pt'",
    ),
    "serve not a run": (lambda c: ["serve", str(c.tmp)], 2, "no config.yaml"),
    "serve port out of range": (
        lambda c: ["serve", str(c.run()), "--port", "70000"],
        2,
        "--port 70000: not a port (0..65535)",
    ),
    "serve port word": (
        lambda c: ["serve", str(c.run()), "--port", "http"],
        2,
        "--port: invalid int value",
    ),
    "serve address not here": (  # TEST-NET-1: no machine has it
        lambda c: ["serve", str(c.run()), "--host", "192.0.2.1", "--port", "0"],
        2,
        "192.0.2.1:0: cannot listen there (Cannot assign requested address)",
    ),
    "export out under a file": (
        lambda c: ["export", str(c.run()), "--format", "tflite", "--out", f"{c.file('f', '')}/m"],
        2,
        "f is a file, not a directory",
    ),
    "explain missing file": (
        lambda c: ["explain", str(c.run()), str(c.tmp / "x.png")],
        2,
        "x.png: no such file",
    ),
    "explain not a run": (
        lambda c: ["explain", str(c.tmp / "none"), "a.png"],
        2,
        "not a run directory (no such folder)",
    ),
    "explain text as image": (
        lambda c: ["explain", str(c.run()), str(c.file("t.png", "hello"))],
        2,
        "t.png: not an image Pillow can read",
    ),
    "report missing": (lambda c: ["report", str(c.tmp / "x")], 2, "not a run directory"),
    "report several without -o": (
        lambda c: ["report", str(c.run()), str(c.run())],
        2,
        "needs -o OUT",
    ),
    "report out under a file": (
        lambda c: ["report", str(c.run()), "-o", str(c.file("f", "x") / "r.html")],
        2,
        "f is a file, not a directory",
    ),
    "report out is a folder": (
        lambda c: ["report", str(c.run()), "-o", str(c.tmp)],
        2,
        "is a directory; name a file",
    ),
    # predict: each bad input named, the good ones still predicted
    "predict a folder": (lambda c: ["predict", str(c.run()), str(c.tmp)], 2, "is a directory"),
    "predict missing file": (
        lambda c: ["predict", str(c.run()), str(c.tmp / "x.png")],
        2,
        "x.png: no such file",
    ),
    "predict empty file": (
        lambda c: ["predict", str(c.run()), str(c.file("e.png", b""))],
        2,
        "e.png: empty file",
    ),
    "predict text as image": (
        lambda c: ["predict", str(c.run()), str(c.file("t.png", "hello"))],
        2,
        "t.png: not an image Pillow can read",
    ),
    "predict truncated png": (
        lambda c: ["predict", str(c.run()), str(c.file("h.png", _png((64, 64))[:60]))],
        2,
        "h.png: damaged image",
    ),
    "predict damaged png": (
        lambda c: ["predict", str(c.run()), str(c.file("d.png", _damaged_png()))],
        2,
        "d.png: damaged image",
    ),
    "predict decompression bomb": (
        lambda c: ["predict", str(c.run()), str(c.file("b.png", _png((20000, 20000), "1")))],
        2,
        "b.png: image of more than 89,478,485 pixels (a decompression bomb?)",
    ),
    "predict huge image": (
        lambda c: ["predict", str(c.run()), str(c.file("h.png", _png((8000, 8000), "1")))],
        2,
        "h.png: image of 8000x8000 pixels, more than 25,000,000",
    ),
    "predict binary csv": (
        lambda c: ["predict", str(c.run()), str(c.file("b.csv", b"\x00\xff\xfe" * 50))],
        2,
        "b.csv: not a text CSV file",
    ),
    "predict csv wrong columns": (
        lambda c: ["predict", str(c.run()), str(c.file("w.csv", "1,2,3\n"))],
        2,
        "w.csv:1: 3 columns",
    ),
    "predict csv word": (
        lambda c: ["predict", str(c.run()), str(c.file("n.csv", _csv_row(pixel="x")))],
        2,
        "n.csv:1: non-numeric cell",
    ),
    "predict npy shape": (
        lambda c: ["predict", str(c.run()), str(_npy(c, np.zeros((3, 5))))],
        2,
        "shape (3, 5), expected",
    ),
    "predict npy nan": (
        lambda c: ["predict", str(c.run()), str(_npy(c, np.full((28, 28), np.nan)))],
        2,
        "contains NaN",
    ),
    "predict npy pickle": (
        lambda c: ["predict", str(c.run()), str(_npy(c, np.array([{}], dtype=object)))],
        2,
        "not a readable .npy file",
    ),
    "predict npy garbage": (
        lambda c: ["predict", str(c.run()), str(c.file("g.npy", b"\x93NUMPY garbage"))],
        2,
        "g.npy: not a readable .npy file",
    ),
    "predict top 0": (
        lambda c: ["predict", str(c.run()), str(c.file("ok.png", _png())), "--top", "0"],
        2,
        "--top must be >= 1",
    ),
    "predict not a run": (
        lambda c: ["predict", str(c.tmp), str(c.file("ok.png", _png()))],
        2,
        "no config.yaml",
    ),
    # sweeps
    "sweep trials 0": (lambda c: ["sweep", "--trials", "0"], 2, "--trials and --jobs must be"),
    "sweep malformed storage": (
        lambda c: ["sweep", "--storage", "notaurl", "--out", str(c.tmp / "s")],
        2,
        "--storage notaurl: cannot open the study storage",
    ),
    "sweep sqlite in a missing folder": (
        lambda c: ["sweep", "--storage", f"sqlite:///{c.tmp}/no/s.db", "--out", str(c.tmp / "s")],
        2,
        "no does not exist",
    ),
    "sweep unreachable postgres": (
        lambda c: [
            "sweep",
            "--storage",
            "postgresql+psycopg://u:secret@127.0.0.1:9/db",
            "--out",
            str(c.tmp / "s"),
        ],
        2,
        "u:***@127.0.0.1:9/db: cannot open the study storage",
    ),
    "sweep out is a file": (
        lambda c: ["sweep", "--out", str(c.file("f", "x"))],
        2,
        "exists and is not a directory",
    ),
    "sweep space missing": (
        lambda c: ["sweep", "--space", str(c.tmp / "space.yaml")],
        2,
        "space.yaml",
    ),
}


def _truncate(path: Path) -> Path:
    """Cut a file to half its length (a kill mid-write by an older version); return its run."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path.parent


def _replace(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path.parent


def _npy(ctx: Ctx, array: np.ndarray) -> Path:
    path = ctx.tmp / "a.npy"
    np.save(path, array, allow_pickle=True)
    return path


def _mixed(ctx: Ctx) -> Path:
    folder = ctx.idx_data()
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    shutil.copy(ctx.data / "fashion-mnist_train.csv", folder)
    return folder


def _one_csv(ctx: Ctx) -> Path:
    folder = ctx.csv_data()
    (folder / "fashion-mnist_test.csv").unlink()
    return folder


def _truncated_gzip(ctx: Ctx) -> Path:
    folder = ctx.idx_data()
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("name", list(CASES))
def test_catalogue(name, tiny_data_dir, tiny_run, tmp_path, capsys, monkeypatch):
    build, code, words = CASES[name]
    ctx = Ctx(tmp_path, tiny_data_dir, tiny_run)
    argv = build(ctx)
    if argv[:1] == ["train"] and "--data-dir" not in argv and "--resume" not in argv:
        argv += ["--data-dir", str(tiny_data_dir)]
    before = _snapshot(tmp_path)
    capsys.readouterr()
    try:
        assert main(argv) == code
    except SystemExit as exit:  # argparse
        assert exit.code == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fashion-tcn: error: "), err
    assert words in lines[0], err
    after = _snapshot(tmp_path)
    for path, content in before.items():  # nothing that existed was changed or removed
        assert after.get(path) == content, f"{path} changed"


def test_every_command_has_catalogued_mistakes(tiny_data_dir, tiny_run, tmp_path):
    """Each subcommand of the real parser is exercised by at least three cases."""
    import argparse
    from collections import Counter

    from fashion_tcn.flags import build_parser

    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    counts = Counter()
    for i, (build, _, _) in enumerate(CASES.values()):
        (tmp_path / str(i)).mkdir()
        argv = build(Ctx(tmp_path / str(i), tiny_data_dir, tiny_run))
        counts[argv[0] if argv else ""] += 1
    assert {name: counts[name] for name in commands.choices if counts[name] < 3} == {}


def test_good_inputs_are_predicted_beside_bad_ones(tiny_run, tmp_path, capsys):
    good = tmp_path / "good.png"
    good.write_bytes(_png())
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png((20000, 20000), "1"))
    assert main(["predict", str(tiny_run), str(bomb), str(good), "--top", "1"]) == 2
    out, err = capsys.readouterr()
    assert out.startswith(f"{good}: ") and len(out.splitlines()) == 1
    assert len(err.splitlines()) == 1 and "bomb.png" in err


def test_disk_full_while_saving_leaves_no_damaged_checkpoint(
    tiny_data_dir, tmp_path, capsys, monkeypatch
):
    """A full disk in the middle of writing model.keras: one line, exit 1, and no half file
    under the checkpoint's name (Keras's own callback wrote in place)."""
    import errno

    import keras

    real_save = keras.Model.save

    def save_until_full(self, path, *args, **kwargs):
        real_save(self, path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:100])  # part of it reached the disk
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(keras.Model, "save", save_until_full)
    run = tmp_path / "full"
    argv = ["train", "--data-dir", str(tiny_data_dir), "--run-dir", str(run), *SMALL]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("model.keras: No space left on device"), err
    assert not (run / "model.keras").exists() and not (run / "last.keras").exists()
    assert not list(run.glob(".*partial*"))


def test_ctrl_c_before_the_first_checkpoint_leaves_nothing(tiny_data_dir, tmp_path, monkeypatch):
    import fashion_tcn.train as train_module

    def interrupt(self, epoch, logs=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module.EpochTimer, "on_epoch_begin", interrupt)
    run = tmp_path / "stopped"
    argv = ["train", "--data-dir", str(tiny_data_dir), "--run-dir", str(run), *SMALL]
    assert main(argv) == 130
    assert not run.exists()  # so the same command can simply be run again
    monkeypatch.undo()
    assert main(argv) == 0


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fashion_tcn.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_a_whole_process_prints_only_its_error(tiny_data_dir, tmp_path):
    """No TensorFlow start-up lines and no argparse usage: one line each, with the default
    environment (no TF_CPP_MIN_LOG_LEVEL of our own)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    for args in (
        ["train", "--epochs", "x"],
        ["train", "--data-dir", str(tiny_data_dir), "--resume", "--run-dir", str(tmp_path)],
        ["predict", str(tmp_path / "nothing"), "x.png"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "fashion_tcn.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_missing_backend_is_one_line(tmp_path):
    """`pip install fashion-tcn` without the [cpu] extra, then `fashion-tcn train`."""
    fake = tmp_path / "site" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(name='tensorflow')\n")
    run = tmp_path / "run"
    result = _cli(
        "evaluate",
        str(run),
        env={"PYTHONPATH": f"{tmp_path / 'site'}:{os.environ.get('PYTHONPATH', '')}"},
    )
    assert result.returncode == 2
    assert "not a run directory" in result.stderr  # checks come before the backend loads
    (run).mkdir()
    (run / "config.yaml").write_text("")
    (run / "model.keras").write_text("")
    result = _cli(
        "evaluate",
        str(run),
        env={
            "PYTHONPATH": f"{tmp_path / 'site'}:{os.environ.get('PYTHONPATH', '')}",
            "KERAS_BACKEND": "tensorflow",
        },
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'fashion-tcn[cpu]'" in lines[0], result.stderr


EARLY = textwrap.dedent(
    """
    import sys
    from fashion_tcn.cli import main
    code = main(sys.argv[1:])
    print(code, "keras" in sys.modules, "tensorflow" in sys.modules)
    """
)


@pytest.mark.parametrize(
    "name",
    [
        "run dir not empty",
        "resume nothing to resume",
        "evaluate not a run",
        "train on bad data",
        "config word for a number",
        "predict not a run",
        "seed negative",
    ],
)
def test_mistakes_are_reported_before_tensorflow_loads(name, tiny_data_dir, tiny_run, tmp_path):
    """docs/training.md promises these before TensorFlow loads: Keras is never imported for them."""
    argv = CASES[name][0](Ctx(tmp_path, tiny_data_dir, tiny_run))
    if argv[:1] == ["train"] and "--data-dir" not in argv and "--resume" not in argv:
        argv += ["--data-dir", str(tiny_data_dir)]
    result = subprocess.run(
        [sys.executable, "-c", EARLY, *argv], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.split() == ["2", "False", "False"], result.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_report_to_a_full_device_is_one_line_and_leaves_the_device(tiny_run, capsys):
    """`report RUN -o /dev/full` once exited 0 after renaming an HTML file over the device."""
    assert main(["report", str(tiny_run), "-o", "/dev/full"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fashion-tcn: error: /dev/full: No space left on device"]
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
