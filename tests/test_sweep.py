"""Sweeps: a tiny study end to end, pruning, space-file errors (workers: test_sweep_workers)."""

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from sweeping import SMALL_SPACE, run_sweep, space_file

from fashion_tcn import space as sweep_space
from fashion_tcn.config import Config, ConfigError, load_config

pytestmark = pytest.mark.minutes(2)


def test_tiny_sweep_end_to_end(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    space = space_file(tmp_path, SMALL_SPACE)
    code = run_sweep(tiny_data_dir, out, space, "--trials", "2")
    assert code == 0
    printed = capsys.readouterr().out
    assert "best trial" in printed and "| trial | state | val_accuracy |" in printed

    study = optuna.load_study(study_name="fashion-tcn", storage=f"sqlite:///{out / 'study.db'}")
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(study.trials) == len(finished) == 2
    for name in ("trials.csv", "trials.md", "best.yaml", "optimization_history.png", "report.html"):
        assert (out / name).is_file(), name

    best = load_config(out / "best.yaml")
    assert best.train.epochs == 1 and best.model.filters in (4, 8)
    best_run = Path(study.best_trial.user_attrs["run_dir"])
    assert load_config(best_run / "config.yaml") == best  # `train --config best.yaml` reruns it

    # re-running resumes the study: one more trial makes three
    assert run_sweep(tiny_data_dir, out, space, "--trials", "3", "--no-test", "--no-report") == 0
    study = optuna.load_study(study_name="fashion-tcn", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 3

    # optuna-dashboard serves the same storage (`optuna-dashboard sqlite:///SWEEP/study.db`)
    status, studies = _dashboard_get(f"sqlite:///{out / 'study.db'}", "/api/studies")
    assert status.startswith("200")
    [summary] = studies["study_summaries"]
    assert summary["study_name"] == "fashion-tcn"
    status, detail = _dashboard_get(
        f"sqlite:///{out / 'study.db'}", f"/api/studies/{summary['study_id']}"
    )
    assert status.startswith("200") and len(detail["trials"]) == 3


def _dashboard_get(storage: str, path: str) -> tuple[str, dict]:
    """GET `path` from optuna-dashboard's WSGI app on `storage`, as its browser page would."""
    import json
    import wsgiref.util

    from optuna_dashboard import wsgi

    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    wsgiref.util.setup_testing_defaults(environ)
    status = []
    body = b"".join(wsgi(storage)(environ, lambda code, headers, *_: status.append(code)))
    return status[0], json.loads(body)


def test_short_receptive_field_trials_are_pruned_with_a_reason(tiny_data_dir, tmp_path):
    out = tmp_path / "rf"
    space = space_file(tmp_path, "levels: [1]\nkernel_size: [2]\n")  # field 3 < 28 rows
    assert run_sweep(tiny_data_dir, out, space, "--trials", "2") == 1  # nothing completed
    study = optuna.load_study(study_name="fashion-tcn", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    assert "receptive field" in study.trials[0].user_attrs["reason"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("depth: [1, 2]\n", "unknown parameter 'depth'"),
        ("lr: {low: 0.01, high: 0.001}\n", "range is empty"),
        ("filters: []\n", "empty list"),
        ("lr: {low: -1.0, high: 0.1}\n", "lr"),
        ("lr: {low: 0.0, high: 0.1, log: true}\n", "log range must be positive"),
        ("optimizer: [adam, adagrad]\n", "optimizer='adagrad' is invalid"),
        ("norm: [layer, group]\n", "norm='group' is invalid"),
        ("lr: {low: 0.001}\n", "{low, high, log}"),
        ("[1, 2\n", "not a valid space file"),
    ],
)
def test_bad_space_files(tmp_path, text, words):
    path = space_file(tmp_path, text)
    with pytest.raises(
        ConfigError, match=words.replace("{", r"\{").replace("}", r"\}").replace("[", r"\[")
    ) as error:
        sweep_space.load_space(path, Config())
    assert "\n" not in str(error.value)


def test_bad_space_file_exits_2_with_one_line(tmp_path):
    path = space_file(tmp_path, "lr: {low: 0.0, high: 0.1}\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fashion_tcn.cli",
            "sweep",
            "--space",
            str(path),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "lr" in result.stderr


def test_default_space_is_valid():
    names = {p.name for p in sweep_space.load_space(sweep_space.DEFAULT_SPACE, Config())}
    assert {
        "lr",
        "batch_size",
        "epochs",
        "activation",
        "optimizer",
        "filters",
        "levels",
        "dropout",
        "norm",
        "augment",
    } <= names


def test_a_trial_on_a_longer_schedule_is_not_pruned_for_it():
    """Three 5-epoch trials whose validation accuracy rises with the fraction of the schedule
    done; a 20-epoch trial that rises the same way is behind them at every epoch but never at
    any fraction of its schedule: it runs to the end. One that is really worse is pruned."""
    import types

    from fashion_tcn.sweep import PruningCallback, make_pruner

    study = optuna.create_study(direction="maximize", pruner=make_pruner())

    def run(epochs: int, quality: float) -> int | None:
        trial = study.ask()
        callback = PruningCallback(trial, epochs)
        callback.set_model(types.SimpleNamespace(stop_training=False))
        for epoch in range(epochs):
            callback.on_epoch_end(epoch, {"val_accuracy": quality * (epoch + 1) / epochs})
            if callback.model.stop_training:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                return callback.pruned_at
        study.tell(trial, quality)
        return None

    assert [run(5, 0.9) for _ in range(3)] == [None, None, None]
    assert run(20, 0.9) is None  # epoch 2 of 20 (0.09) < epoch 2 of 5 (0.36): fine here
    assert run(20, 0.5) is not None
