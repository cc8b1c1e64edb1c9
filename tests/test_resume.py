"""A run killed with SIGKILL and resumed ends where the uninterrupted run ends, to the bit."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = [pytest.mark.backend, pytest.mark.minutes(1)]

FLAGS = [
    "--limit-train",
    "300",
    "--epochs",
    "4",
    "--augment",
    "light",
    "--erase",
    "0.5",
    "--dropout",
    "0.1",
    "--filters",
    "8",
    "--dilations",
    "1,2,4",
    "--stacks",
    "1",
    "--batch-size",
    "32",
    "--quiet",
    "--no-test",  # the weights and the history are compared; evaluate's and the
    "--no-report",  # report's own tests cover the rest
]

# Dies from SIGKILL in the middle of the third epoch: no handler, no cleanup, like `kill -9`.
KILLED = textwrap.dedent(
    """
    import os, signal, sys
    import fashion_tcn.train as train

    class Kill(train.keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == 2 and batch == 3:
                os.kill(os.getpid(), signal.SIGKILL)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    make = train.run_callbacks
    train.run_callbacks = lambda *a, **k: [*make(*a, **k), Kill()]
    from fashion_tcn.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _run(*args: str, script: str | None = None) -> subprocess.CompletedProcess:
    command = ["-c", script, *args] if script else ["-m", "fashion_tcn.cli", *args]
    return subprocess.run(
        [sys.executable, *command],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=600,
    )


def _weights(run_dir) -> list[np.ndarray]:
    import keras

    import fashion_tcn.models  # noqa: F401  (registers the custom objects)

    model = keras.saving.load_model(run_dir / "last.keras")
    return [*model.get_weights(), *(v.numpy() for v in model.optimizer.variables)]


def test_killed_and_resumed_equals_uninterrupted(tiny_data_dir, tmp_path):
    data = ["--data-dir", str(tiny_data_dir)]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _run("train", *data, "--run-dir", str(straight), *FLAGS).returncode == 0

    result = _run("train", *data, "--run-dir", str(killed), *FLAGS, script=KILLED)
    assert result.returncode == -signal.SIGKILL
    assert len((killed / "history.csv").read_text().splitlines()) == 1 + 2  # header, 2 epochs

    resumed = _run(
        "train", "--run-dir", str(killed), "--resume", "--quiet", "--no-test", "--no-report"
    )
    assert resumed.returncode == 0, resumed.stderr
    for a, b in zip(_weights(straight), _weights(killed), strict=True):
        np.testing.assert_array_equal(a, b)
    rows = [(killed / "history.csv").read_text(), (straight / "history.csv").read_text()]
    columns = [[line.split(",")[:2] for line in text.splitlines()] for text in rows]
    assert columns[0] == columns[1]  # epoch and training accuracy, row by row
