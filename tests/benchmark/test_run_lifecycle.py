"""Runs that end badly (issue 14 point 5): owner tags and heartbeats, dead runs marked KILLED, store
calls retried while sqlite is locked, one `run` per suite at a time, two suites sharing one store.

The slow tests start real `python -m benchmark run` processes on the packaged synthetic-tiny suite cut
to one model and seed. To keep them short, a module fixture runs that suite once in-process and the
later runs start from a copy of its stage cache (stage and cell keys do not depend on the suite name),
so they only replay cached cells; the run that gets killed starts from an empty cache, so it is
certainly still busy when the test kills it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from benchmark.core.errors import TrackingError
from benchmark.core.runlock import INFO_NAME, ProcessIdentity
from benchmark.tracking import store as tracking
from benchmark.tracking.store import (
    HEARTBEAT_TAG,
    KILLED_REASON_TAG,
    OWNER_TAGS,
    Tracker,
    describe_reaped,
    owner_tags,
    retrying,
)

ROOT = Path(__file__).resolve().parents[2]
FAST = ["suite.models=dlrm", "suite.seeds=0"]


# ---------------------------------------------------------------- retry (no store needed)


def test_store_calls_are_retried_while_sqlite_is_locked(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(tracking.time, "sleep", slept.append)
    calls: list[int] = []

    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) < 4:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return 2 * x

    assert retrying(flaky, "log_batch")(21) == 42 and len(calls) == 4
    assert len(slept) == 3 and slept[0] < slept[2]  # backoff grows (50 ms doubling, jittered x0.5..1.5)

    def broken() -> None:
        raise ValueError("no such table: runs")

    with pytest.raises(ValueError):  # anything but lock contention fails at once
        retrying(broken, "x")()

    def locked() -> None:
        raise RuntimeError("database is locked")

    with pytest.raises(TrackingError, match=r"stayed locked for 0s \(set_terminated\)"):
        retrying(locked, "set_terminated", retry_for_s=0)()


# ---------------------------------------------------------------- the reaper on a real store


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_owner_heartbeat_and_reaping(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "s", artifact_root=tmp_path / "a")
    tracker.check()
    client = MlflowClient(tracking_uri=uri)
    me = ProcessIdentity.current()
    now = time.time()

    def recorded(name: str, owner: ProcessIdentity, beat: float, status: str = "") -> str:
        tags = {"mlflow.runName": name, **owner_tags(owner), HEARTBEAT_TAG: f"{beat:.3f}"}
        run_id = client.create_run(tracker.experiment_id, tags=tags).info.run_id
        if status:
            client.set_terminated(run_id, status)
        return run_id

    gone = ProcessIdentity(me.host, _dead_pid(), "boot/1")
    dead = recorded("dead-local", gone, now - 5)
    stale = recorded("stale-remote", ProcessIdentity("far-away", 7, "b/1"), now - 3600)
    fresh = recorded("fresh-remote", ProcessIdentity("far-away", 8, "b/1"), now - 60)
    done = recorded("finished", gone, now - 5, status="FINISHED")

    tracker.heartbeat_interval_s = 0.05  # the background beat, fast for the test
    with tracker.parent_run("live") as parent:
        with tracker.child_run("c") as child:
            child_id = child.run_id
            before = float(client.get_run(child_id).data.tags[HEARTBEAT_TAG])
            time.sleep(0.01)
            child.log_metrics({"x": 1.0}, step=0)  # every logged batch refreshes the heartbeat
            assert float(client.get_run(child_id).data.tags[HEARTBEAT_TAG]) > before
        beat0 = float(client.get_run(parent.run_id).data.tags[HEARTBEAT_TAG])
        time.sleep(0.5)
        assert float(client.get_run(parent.run_id).data.tags[HEARTBEAT_TAG]) > beat0  # beat while silent
        reaped = tracker.reap_dead_runs()  # our own open run is alive: untouched
        assert client.get_run(parent.run_id).info.status == "RUNNING"

    assert {r.run_id for r in reaped} == {dead, stale}
    lines = describe_reaped(reaped)
    assert f"marked 1 run(s) of a dead process ({gone}) KILLED: the process is gone" in lines
    assert any(line.startswith("marked 1 run(s) of a dead process (pid 7 on host far-away) KILLED: no heartbeat "
                               "for 60 min (timeout 30 min)") for line in lines)
    runs = {r.info.run_id: r for r in client.search_runs([tracker.experiment_id])}
    assert runs[dead].info.status == runs[stale].info.status == "KILLED"
    assert abs(runs[stale].info.end_time - (now - 3600) * 1000) <= 1  # ended at its last heartbeat
    assert runs[dead].data.tags[KILLED_REASON_TAG].startswith(f"the process is gone (owner: {gone}; marked by {me} ")
    assert runs[fresh].info.status == "RUNNING" and runs[done].info.status == "FINISHED"
    assert runs[parent.run_id].info.status == runs[child_id].info.status == "FINISHED"
    for run_id in (parent.run_id, child_id):
        tags = runs[run_id].data.tags
        assert [tags[t] for t in OWNER_TAGS] == [me.host, str(me.pid), me.start]
    assert tracker.reap_dead_runs() == []  # nothing left to do


# ---------------------------------------------------------------- real `qarm-bench run` processes


def _sets(runs: Path, name: str, *extra: str) -> list[str]:
    out = []
    for s in [f"suite.name={name}", *FAST, f"suite.runs_dir={runs}",
              f"suite.tracking_uri=sqlite:///{runs / 'mlflow.db'}", *extra]:
        out += ["--set", s]
    return out


def _start(runs: Path, name: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as f:
        return subprocess.Popen([sys.executable, "-m", "benchmark", "run", "synthetic-tiny", *_sets(runs, name)],
                                stdout=f, stderr=subprocess.STDOUT, env=env, cwd=runs.parent)


def _wait(p: subprocess.Popen[bytes], log: Path, timeout: float = 600) -> int:
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError(f"run did not finish in {timeout}s:\n{log.read_text()[-3000:]}") from None


def _runs(uri: str, experiment: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else list(client.search_runs([exp.experiment_id]))


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/ of one finished synthetic-tiny run (dlrm, seed 0): its stage cache seeds the later runs."""
    from benchmark.config.suite import load_config
    from benchmark.engine.suite import SuiteRun

    runs = tmp_path_factory.mktemp("warm") / "runs"
    SuiteRun(load_config("synthetic-tiny", [f"suite.runs_dir={runs}", *FAST,
                                            f"suite.tracking_uri=sqlite:///{runs / 'mlflow.db'}"]),
             progress=False).run()
    return runs


def _seed(warm: Path, runs: Path, name: str) -> None:
    shutil.copytree(warm / "synthetic-tiny" / "artifacts", runs / name / "artifacts", dirs_exist_ok=True)


@pytest.mark.slow
def test_killed_run_is_marked_killed_by_the_next_run(warm: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from benchmark.cli import main

    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(warm / "mlflow.db", runs / "mlflow.db")  # a store with its tables made (saves a migration)
    uri = f"sqlite:///{runs / 'mlflow.db'}"
    log = tmp_path / "killed.log"
    p = _start(runs, "killed", log)  # empty stage cache: still computing stages long after the parent opens
    deadline = time.monotonic() + 300
    while not [r for r in _runs(uri, "killed") if r.info.status == "RUNNING"]:
        assert p.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = _runs(uri, "killed")
    assert before and {r.info.status for r in before} == {"RUNNING"}  # nobody could mark them
    assert {r.data.tags["qarm.owner.pid"] for r in before} == {str(p.pid)}
    assert (runs / "killed" / INFO_NAME).exists()  # SIGKILL: no cleanup, yet the lock is free

    _seed(warm, runs, "killed")
    capsys.readouterr()
    assert main(["run", "synthetic-tiny", *_sets(runs, "killed")]) == 0
    err = capsys.readouterr().err
    host = ProcessIdentity.current().host
    assert (f"[reap]   marked {len(before)} run(s) of a dead process (pid {p.pid} on host {host}) KILLED: "
            "the process is gone") in err, err
    after = {r.info.run_id: r for r in _runs(uri, "killed")}
    for r in before:
        assert after[r.info.run_id].info.status == "KILLED"
        assert after[r.info.run_id].data.tags[KILLED_REASON_TAG].startswith("the process is gone")
    new = [r for rid, r in after.items() if rid not in {b.info.run_id for b in before}]
    assert len(new) == 1 + 3 and {r.info.status for r in new} == {"FINISHED"}  # parent + 3 variant cells


@pytest.mark.slow
def test_two_suites_share_one_fresh_sqlite_store(warm: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"  # no mlflow.db yet: both processes find an empty store at the same time
    for name in ("left", "right"):
        _seed(warm, runs, name)
    procs = {name: _start(runs, name, tmp_path / f"{name}.log") for name in ("left", "right")}
    for name, p in procs.items():
        assert _wait(p, tmp_path / f"{name}.log") == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    uri = f"sqlite:///{runs / 'mlflow.db'}"
    for name in procs:
        got = _runs(uri, name)
        parents = [r for r in got if "mlflow.parentRunId" not in r.data.tags]
        assert len(parents) == 1 and len(got) == 1 + 3, name
        assert {r.info.status for r in got} == {"FINISHED"}, name


@pytest.mark.slow
def test_same_suite_twice_the_second_refuses(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    first = _start(runs, "twice", tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 120
        while not (runs / "twice" / INFO_NAME).exists():
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
            time.sleep(0.1)
        second = _start(runs, "twice", tmp_path / "second.log")
        assert _wait(second, tmp_path / "second.log", timeout=120) == 2
        err = (tmp_path / "second.log").read_text()
        assert f"already being run by pid {first.pid} on host {ProcessIdentity.current().host}" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
        assert first.poll() is None  # the first run goes on undisturbed
    finally:
        first.kill()
        first.wait()
