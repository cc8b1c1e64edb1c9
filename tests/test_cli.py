"""The `fashion-tcn` command end to end: artifacts, evaluate, resume, and clean failures."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fashion_tcn.cli import main
from fashion_tcn.sequences import make_permutation

pytestmark = [pytest.mark.backend, pytest.mark.minutes(4)]

ARTIFACTS = [
    "config.yaml",
    "calibration.json",
    "reliability.png",
    "explain.npz",
    "data.json",
    "model.keras",
    "last.keras",
    "history.csv",
    "predictions.npz",
    "mistakes.npz",
    "anytime.csv",
    "anytime.png",
    "report.html",
    "summary.txt",
    "metrics.json",
    "confusion_matrix.csv",
    "confusion_matrix.png",
    "truth_table.csv",
    "training_curves.png",
]
SMALL = [
    "--filters",
    "8",
    "--dilations",
    "1,2,4",
    "--dropout",
    "0",
    "--batch-size",
    "32",
    "--quiet",
]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "fashion_tcn.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_train_writes_every_artifact_and_evaluate_agrees(train_tiny, tmp_path, capsys):
    run = tmp_path / "run"
    code = train_tiny(run, "--epochs", "2", "--lr", "0.01", *SMALL, test=True, report=True)
    assert code == 0
    out = capsys.readouterr().out
    assert "Ankle boot" in out and "receptive field: 29" in out
    for name in ARTIFACTS:
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_examples"] == 100 and metrics["epochs"] == 2
    assert metrics["accuracy"] > 0.3  # the bands are easy: far above the 10% of chance
    assert sum(map(sum, metrics["confusion_matrix"])) == 100

    (run / "report.html").unlink()
    (run / "mistakes.npz").rename(tmp_path / "mistakes.npz")
    assert main(["report", str(run)]) == 0
    assert "mistakes.npz is missing" in capsys.readouterr().err
    assert "mistakes.npz is missing" in (run / "report.html").read_text()
    (tmp_path / "mistakes.npz").rename(run / "mistakes.npz")

    assert main(["evaluate", str(run), "--no-report"]) == 0
    assert "mistakes.npz is missing" in (run / "report.html").read_text()  # left as it was
    again = json.loads((run / "metrics.json").read_text())
    assert again["accuracy"] == metrics["accuracy"]
    assert "T-shirt/top" in capsys.readouterr().out

    resume = ["train", "--run-dir", str(run), "--resume", "--epochs", "3", "--quiet", "--no-report"]
    assert main(resume) == 0
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["epochs"] == 3  # one more epoch appended to history.csv


@pytest.mark.one_backend  # the permutation is NumPy; permuted sequences on JAX: test_sequences
def test_permuted_run_keeps_its_permutation(train_tiny, tmp_path):
    run = tmp_path / "perm"
    flags = ["--epochs", "1", "--sequence", "permuted", "--kernel-size", "7"]
    flags += ["--dilations", "1,2,4,8,16,32,64", *SMALL[:2], "--limit-test", "20"]  # 784 steps
    flags += ["--seed", "3", "--permutation-seed", "11"]  # one order for several seeds
    assert train_tiny(run, *flags, test=True) == 0
    np.testing.assert_array_equal(np.load(run / "permutation.npy"), make_permutation(11))
    first = np.load(run / "predictions.npz")["probs"]
    assert main(["evaluate", str(run), "--explain-per-class", "1", "--no-report"]) == 0
    # the same answers, image by image, from the reloaded run: its permutation was kept
    np.testing.assert_allclose(np.load(run / "predictions.npz")["probs"], first, atol=1e-6)


def test_existing_run_dir_is_never_overwritten(tiny_data_dir, tmp_path, capsys):
    run = tmp_path / "taken"
    run.mkdir()
    (run / "model.keras").write_text("precious")
    assert main(["train", "--data-dir", str(tiny_data_dir), "--run-dir", str(run), *SMALL]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (run / "model.keras").read_text() == "precious"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["train", "--lr", "-1"], "lr must be > 0"),
        (["train", "--data-dir", "/nonexistent"], "/nonexistent"),
        (["train", "--dilations", "1,2", "--kernel-size", "2"], "receptive field"),
        (["train", "--config", "/nonexistent.yaml"], "not found"),
        (["evaluate", "/nonexistent"], "not a run directory"),
        (["report", "/nonexistent"], "not a run directory"),
        (["report", "/tmp", "/var"], "needs -o OUT"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, words, tiny_data_dir):
    if "--data-dir" not in args and args[0] == "train":
        args = [*args, "--data-dir", str(tiny_data_dir)]
    result = _cli(*args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("fashion-tcn")]
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_option_exits_2():
    result = _cli("train", "--optimizer", "adagrad")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_ctrl_c_keeps_finished_epochs_and_tests_the_best(
    tiny_data_dir, tmp_path, monkeypatch, capsys
):
    import fashion_tcn.train as train_module

    original = train_module.EpochTimer.on_epoch_end

    def interrupt_second_epoch(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt
        original(self, epoch, logs)

    monkeypatch.setattr(train_module.EpochTimer, "on_epoch_end", interrupt_second_epoch)
    run = tmp_path / "interrupted"
    flags = ["--epochs", "5", *SMALL, "--no-report"]
    code = main(["train", "--data-dir", str(tiny_data_dir), "--run-dir", str(run), *flags])
    assert code == 130  # stopped, not finished, though the best epoch was tested
    assert "interrupted" in capsys.readouterr().out
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 1
    monkeypatch.undo()
    resume = ["train", "--run-dir", str(run), "--resume", "--epochs", "2", "--quiet", "--no-report"]
    assert main(resume) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2


@pytest.mark.one_backend  # the schedule is arithmetic; exact resume on JAX: test_resume
def test_resume_with_more_epochs_stretches_the_schedule(train_tiny, tmp_path, capsys):
    import keras

    import fashion_tcn.models  # noqa: F401  (registers the custom objects)

    def saved(run):
        model = keras.saving.load_model(run / "last.keras")
        schedule = model.optimizer.get_config()["learning_rate"]["config"]
        weights = [w.copy() for w in model.get_weights()]
        return int(model.optimizer.iterations), schedule["decay_steps"], weights

    run = tmp_path / "extended"
    assert train_tiny(run, "--epochs", "1", *SMALL) == 0  # --no-test: nothing of the test set
    assert (run / "model.keras").is_file() and not (run / "metrics.json").exists()
    assert "accuracy" not in capsys.readouterr().out
    steps, decay, before = saved(run)
    assert decay == steps  # cosine over one epoch: the learning rate ends at zero

    assert train_tiny(run, "--resume", "--epochs", "2", "--quiet") == 0
    iterations, decay, after = saved(run)
    assert iterations == 2 * steps and decay == 2 * steps
    # a schedule left at one epoch would have trained the second at a learning rate of zero
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))

    assert train_tiny(run, "--resume", "--epochs", "3", "--filters", "16") == 2
    assert "--filters cannot change" in capsys.readouterr().err
    assert saved(run)[0] == 2 * steps  # refused before anything ran
    assert main(["evaluate", str(run), "--no-report"]) == 0  # the candidate chosen: tested later
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2


@pytest.mark.one_backend  # what the progress prints
def test_progress_off_a_terminal_is_one_line_per_epoch(tiny_data_dir, tmp_path):
    """`make demo > log` must not fill the log with progress-bar redraws."""
    flags = ["--data-dir", str(tiny_data_dir), "--run-dir", str(tmp_path / "run"), "--epochs", "3"]
    quiet = SMALL[:-1]  # SMALL less --quiet: the progress is what this test reads
    result = _cli("train", *flags, *quiet, "--stacks", "1", "--no-test", "--no-report")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout and "\x08" not in result.stdout
    epoch_lines = [line for line in result.stdout.splitlines() if " - loss: " in line]
    assert len(epoch_lines) == 3, result.stdout


def test_a_run_saved_before_models_took_images_still_evaluates_and_predicts(
    tiny_data_dir, tmp_path, capsys
):
    """Version 0.1 saved models that take sequences: evaluate, predict and streaming feed them
    sequences; --resume says why it cannot continue them."""
    import keras

    from fashion_tcn.config import Config, override, save_config
    from fashion_tcn.data import load_fashion_mnist
    from fashion_tcn.models import build_model

    cfg = override(Config(), {"model.filters": 8, "model.dilations": [1, 2, 4, 8]}).resolved()
    run = tmp_path / "old"
    run.mkdir()
    save_config(cfg, run / "config.yaml")
    model = build_model(cfg.model, 28, 28, 0.3, 0.1)  # input named "sequence", as 0.1 saved
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.save(run / "model.keras")
    model.save(run / "last.keras")
    assert main(["evaluate", str(run), "--data-dir", str(tiny_data_dir)]) == 0
    _, test = load_fashion_mnist(tiny_data_dir)
    expected = model.predict(test.images / np.float32(255), verbose=0).argmax(axis=1)
    saved = np.load(run / "predictions.npz")["probs"].argmax(axis=1)
    np.testing.assert_array_equal(saved, expected)
    np.save(tmp_path / "one.npy", test.images[0])
    assert main(["predict", str(run), str(tmp_path / "one.npy"), "--stream"]) == 0
    capsys.readouterr()
    before = (run / "config.yaml").read_bytes()
    flags = ["--data-dir", str(tiny_data_dir), "--run-dir", str(run), "--resume"]
    assert main(["train", *flags, "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "before 0.2" in err and "cannot be resumed" in err and "\n" not in err
    assert (run / "config.yaml").read_bytes() == before
    assert keras.saving.load_model(run / "model.keras").inputs[0].name == "sequence"
