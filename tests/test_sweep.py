"""Sweeps: a tiny study end to end, space-file errors, and workers sharing one storage."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from fashion_tcn import space as sweep_space
from fashion_tcn.cli import main
from fashion_tcn.config import Config, ConfigError, load_config

TINY = ["--epochs", "1", "--batch-size", "64"]


def _sweep(tiny_data_dir: Path, out: Path, space: Path, *flags: str) -> int:
    """`fashion-tcn sweep` on the tiny data, 1 epoch per trial; exit code."""
    return main(
        [
            "sweep",
            "--space",
            str(space),
            "--out",
            str(out),
            "--data-dir",
            str(tiny_data_dir),
            *TINY,
            *flags,
        ]
    )


def _space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


SMALL_SPACE = """
lr: {low: 1.0e-3, high: 1.0e-2, log: true}
filters: [4, 8]
levels: {low: 3, high: 4}
kernel_size: [3, 5]
activation: [relu, gelu]
"""


def test_tiny_sweep_end_to_end(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    space = _space(tmp_path, SMALL_SPACE)
    code = _sweep(tiny_data_dir, out, space, "--trials", "3")
    assert code == 0
    printed = capsys.readouterr().out
    assert "best trial" in printed and "| trial | state | val_accuracy |" in printed

    study = optuna.load_study(study_name="fashion-tcn", storage=f"sqlite:///{out / 'study.db'}")
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(study.trials) == len(finished) == 3
    for name in ("trials.csv", "trials.md", "best.yaml", "optimization_history.png", "report.html"):
        assert (out / name).is_file(), name

    best = load_config(out / "best.yaml")
    assert best.train.epochs == 1 and best.model.filters in (4, 8)
    run = tmp_path / "from-best"
    assert (
        main(["train", "--config", str(out / "best.yaml"), "--run-dir", str(run), "--quiet"]) == 0
    )
    assert load_config(run / "config.yaml") == best  # the best trial, trained again

    # re-running resumes the study: two more trials make five
    assert _sweep(tiny_data_dir, out, space, "--trials", "5") == 0
    study = optuna.load_study(study_name="fashion-tcn", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 5

    # optuna-dashboard serves the same storage (`optuna-dashboard sqlite:///SWEEP/study.db`)
    status, studies = _dashboard_get(f"sqlite:///{out / 'study.db'}", "/api/studies")
    assert status.startswith("200")
    [summary] = studies["study_summaries"]
    assert summary["study_name"] == "fashion-tcn"
    status, detail = _dashboard_get(
        f"sqlite:///{out / 'study.db'}", f"/api/studies/{summary['study_id']}"
    )
    assert status.startswith("200") and len(detail["trials"]) == 5


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
    space = _space(tmp_path, "levels: [1]\nkernel_size: [2]\n")  # field 3 < 28 rows
    assert _sweep(tiny_data_dir, out, space, "--trials", "2") == 1  # nothing completed
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
    path = _space(tmp_path, text)
    with pytest.raises(
        ConfigError, match=words.replace("{", r"\{").replace("}", r"\}").replace("[", r"\[")
    ) as error:
        sweep_space.load_space(path, Config())
    assert "\n" not in str(error.value)


def test_bad_space_file_exits_2_with_one_line(tmp_path):
    path = _space(tmp_path, "lr: {low: 0.0, high: 0.1}\n")
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


def _worker(
    tiny_data_dir: Path, out: Path, space: Path, storage: str, trials: int, heartbeat: str = "60"
) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fashion_tcn.cli",
            "sweep",
            "--trials",
            str(trials),
            "--space",
            str(space),
            "--out",
            str(out),
            "--storage",
            storage,
            "--study",
            "shared",
            "--heartbeat",
            heartbeat,
            "--data-dir",
            str(tiny_data_dir),
            *TINY,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _two_workers_share_one_study(tiny_data_dir, tmp_path, storage):
    space = _space(tmp_path, SMALL_SPACE)
    workers = [_worker(tiny_data_dir, tmp_path / f"w{i}", space, storage, 4) for i in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    study = optuna.load_study(study_name="shared", storage=storage)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == [0, 1, 2, 3]  # exactly the total: no duplicates, none lost
    assert all(t.state.is_finished() for t in study.trials)
    ran = [o.count("\ntrial ") + o.startswith("trial ") for o in outputs]
    assert sum(ran) == 4 and min(ran) >= 1, outputs  # both workers really took trials


def test_two_workers_sqlite(tiny_data_dir, tmp_path):
    _two_workers_share_one_study(tiny_data_dir, tmp_path, f"sqlite:///{tmp_path / 'shared.db'}")


def test_killed_worker_leaves_study_usable(tiny_data_dir, tmp_path):
    storage = f"sqlite:///{tmp_path / 'crash.db'}"
    space = _space(tmp_path, SMALL_SPACE)
    victim = _worker(tiny_data_dir, tmp_path / "victim", space, storage, 3, heartbeat="1")
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until it is inside a trial
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="shared", storage=storage)
        except KeyError:
            continue
        if any(t.state.name == "RUNNING" for t in study.trials):
            break
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    time.sleep(3)  # past the grace period of 2 heartbeats
    survivor = _worker(tiny_data_dir, tmp_path / "survivor", space, storage, 3, heartbeat="1")
    output = survivor.communicate(timeout=600)[0]
    assert survivor.returncode == 0, output
    states = [t.state.name for t in optuna.load_study(study_name="shared", storage=storage).trials]
    assert states[0] == "FAIL" and states.count("COMPLETE") + states.count("PRUNED") == 3


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on loopback (Debian's postgresql, started by the test)."""
    bindir = (
        next(Path("/usr/lib/postgresql").glob("*/bin"), None)
        if Path("/usr/lib/postgresql").is_dir()
        else None
    )
    if bindir is None:
        pytest.fail("PostgreSQL is not installed: .ci/run installs Debian's postgresql")
    root = Path(tempfile.mkdtemp(prefix="fashion-tcn-pg-"))  # pytest's tmp is root-only
    data, run_as = root / "data", []
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(root, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "sweep"],
        check=True,
        capture_output=True,
    )
    port = "55432"
    subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*run_as, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", port, "-U", "sweep", "optuna"],
        check=True,
        capture_output=True,
    )
    yield f"postgresql://sweep@127.0.0.1:{port}/optuna"
    subprocess.run(
        [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
        capture_output=True,
    )


def test_two_workers_postgresql(tiny_data_dir, tmp_path, postgres_url):
    _two_workers_share_one_study(tiny_data_dir, tmp_path, postgres_url)


def test_jobs_start_worker_processes(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "jobs"
    space = _space(tmp_path, SMALL_SPACE)
    assert _sweep(tiny_data_dir, out, space, "--trials", "2", "--jobs", "2") == 0
    study = optuna.load_study(study_name="fashion-tcn", storage=f"sqlite:///{out / 'study.db'}")
    assert sorted(t.number for t in study.trials) == [0, 1]
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) == 2, workers  # each process took a trial
    assert "2 worker(s)" in capsys.readouterr().out


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
