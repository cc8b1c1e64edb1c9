"""Sweep workers sharing one study: SQLite, PostgreSQL, a killed worker, `--jobs`. A file of
its own so that pytest-xdist runs it beside the rest of the sweep tests."""

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
from sweeping import SMALL_SPACE, TINY, run_sweep, space_file

pytestmark = pytest.mark.minutes(6)


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
            "--no-report",  # each worker only names the best trial:
            "--no-test",  # no page, no test
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
    space = space_file(tmp_path, SMALL_SPACE)
    workers = [_worker(tiny_data_dir, tmp_path / f"w{i}", space, storage, 4) for i in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    study = optuna.load_study(study_name="shared", storage=storage)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == [0, 1, 2, 3]  # exactly the total: no duplicates, none lost
    assert all(t.state.is_finished() for t in study.trials)
    ran = [o.count("\ntrial ") + o.startswith("trial ") for o in outputs]
    assert sum(ran) == 4 and min(ran) >= 1, outputs  # both workers really took trials
    assert all("best trial" in o and "not tested" in o for o in outputs), outputs
    assert not any("report:" in o or "test accuracy" in o for o in outputs), outputs
    assert not any((tmp_path / f"w{i}" / "report.html").exists() for i in range(2))


def test_two_workers_sqlite(tiny_data_dir, tmp_path):
    _two_workers_share_one_study(tiny_data_dir, tmp_path, f"sqlite:///{tmp_path / 'shared.db'}")


def test_killed_worker_leaves_study_usable(tiny_data_dir, tmp_path):
    storage = f"sqlite:///{tmp_path / 'crash.db'}"
    space = space_file(tmp_path, SMALL_SPACE)
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
    space = space_file(tmp_path, SMALL_SPACE)
    assert (
        run_sweep(
            tiny_data_dir, out, space, "--trials", "2", "--jobs", "2", "--no-test", "--no-report"
        )
        == 0
    )
    study = optuna.load_study(study_name="fashion-tcn", storage=f"sqlite:///{out / 'study.db'}")
    assert sorted(t.number for t in study.trials) == [0, 1]
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) == 2, workers  # each process took a trial
    out_text = capsys.readouterr().out
    assert "2 worker(s)" in out_text and "not tested" in out_text
