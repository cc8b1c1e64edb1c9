"""Slow tier: the wheel, built and installed (not editable) into a fresh virtualenv outside the
repository with its `serve` extra, trains, predicts, reports and serves: package data (templates,
the default space) included."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).parents[1]


def _run(*command: str | Path, cwd: Path, timeout: int = 900) -> str:
    env = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result.stdout


def test_the_wheel_installs_into_a_fresh_venv_and_runs(tmp_path, tiny_data_dir):
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", "dist", REPO, cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("fashion_tcn-*.whl")
    _run(sys.executable, "-m", "venv", "venv", cwd=tmp_path)
    bin_dir = tmp_path / "venv" / "bin"
    # --no-compile: the first import compiles what it needs; all of TensorFlow's .pyc files up
    # front doubled the install (86 s against 43 s)
    _run(bin_dir / "pip", "install", "-q", "--no-compile", f"{wheel}[cpu,serve]", cwd=tmp_path)

    where = _run(
        bin_dir / "python", "-c", "import fashion_tcn; print(fashion_tcn.__file__)", cwd=tmp_path
    )
    assert Path(where.strip()).is_relative_to(tmp_path / "venv"), where  # not the repository

    cli = bin_dir / "fashion-tcn"
    flags = ["--epochs", "1", "--filters", "4", "--stacks", "1", "--quiet"]
    _run(cli, "train", "--data-dir", tiny_data_dir, "--run-dir", "run", *flags, cwd=tmp_path)
    assert (tmp_path / "run" / "report.html").is_file()
    np.save(tmp_path / "x.npy", np.zeros((28, 28), np.uint8))
    assert _run(cli, "predict", "run", "x.npy", cwd=tmp_path).startswith("x.npy")
    _run(cli, "report", "run", "-o", "again.html", cwd=tmp_path)
    assert "Explanations" in (tmp_path / "again.html").read_text(encoding="utf-8")

    server = subprocess.Popen(
        [cli, "serve", "run", "--port", "0"], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        line = server.stdout.readline()  # "serving run at http://127.0.0.1:PORT/ ..."
        assert line.startswith("serving run at http://127.0.0.1:"), line
        url = line.split()[3]
        with urllib.request.urlopen(url + "v1/health", timeout=30) as response:
            assert json.load(response)["status"] == "ok"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert "fashion-tcn: run" in response.read().decode()
    finally:
        server.terminate()
        server.wait(30)
