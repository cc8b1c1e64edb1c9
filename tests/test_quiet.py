"""Every command, in a fresh process as a user runs it, prints nothing on stderr when it works:
no TensorFlow start-up lines, no deprecation notes from the exporters."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fashion_tcn.cli import startup_lines_dropped
from fashion_tcn.data import load_fashion_mnist

pytestmark = pytest.mark.minutes(2)


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}  # as a user has it
    return subprocess.run(
        [sys.executable, "-m", "fashion_tcn.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_startup_lines_are_dropped_and_every_other_line_kept(capfd):
    """What TensorFlow's C++ start-up writes on a CPU where it turns oneDNN on (AVX-512), past
    TF_CPP_MIN_LOG_LEVEL; an error from C++ and a Python warning still come through."""
    with startup_lines_dropped():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are ")
        os.write(2, b"written to STDERR\n")
        os.write(2, b"I0000 00:00:1796117372.401950   19248 port.cc:153] oneDNN custom ops\n")
        os.write(2, b"E0000 00:00:1796117372.401950   19248 loader.cc:9] a real error\n")
        print("a python warning", file=sys.stderr)
    assert sorted(capfd.readouterr().err.splitlines()) == [
        "E0000 00:00:1796117372.401950   19248 loader.cc:9] a real error",
        "a python warning",
    ]  # (under capfd, sys.stderr is not file descriptor 2: the order is pytest's)


@pytest.fixture(scope="module")
def run_dir(tiny_data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("quiet") / "run"
    flags = ["--epochs", "1", "--filters", "4", "--stacks", "1", "--dilations", "1,2,4"]
    flags += ["--no-report"]  # `report` is its own command below
    result = _run("train", "--data-dir", str(tiny_data_dir), "--run-dir", str(run), *flags)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return run


@pytest.fixture(scope="module")
def inputs(tiny_data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    images = load_fashion_mnist(tiny_data_dir)[1].images[:2]
    Image.fromarray(images[0]).save(folder / "img0.png")
    np.save(folder / "two.npy", images)
    return folder


def test_predict_stream_and_explain_are_quiet(run_dir, inputs, tmp_path):
    for args in (
        ["predict", str(run_dir), str(inputs / "img0.png"), str(inputs / "two.npy")],
        ["predict", str(run_dir), str(inputs / "img0.png"), "--stream"],
        ["explain", str(run_dir), str(inputs / "img0.png"), "-o", str(tmp_path / "x")],
    ):
        result = _run(*args)
        assert result.returncode == 0 and result.stderr == "", (args, result.stderr)
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["img0.png"]


def test_evaluate_report_and_data_are_quiet(run_dir, tiny_data_dir):
    for args in (
        ["evaluate", str(run_dir)],
        ["report", str(run_dir)],
        ["data", "--data-dir", str(tiny_data_dir)],
    ):
        result = _run(*args)
        assert result.returncode == 0 and result.stderr == "", (args, result.stderr)


@pytest.mark.parametrize("fmt", ["savedmodel", "tflite", "onnx"])
def test_export_is_quiet(run_dir, fmt, tmp_path):
    pytest.importorskip("tensorflow", reason="export writes TensorFlow formats")
    if fmt == "onnx":
        pytest.importorskip("tf2onnx")
    result = _run("export", str(run_dir), "--format", fmt, "--out", str(tmp_path / f"m.{fmt}"))
    assert result.returncode == 0 and result.stderr == "", result.stderr
