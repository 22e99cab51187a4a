"""Who a process is, which recorded runs are dead, and the per-suite lock (benchmark/core/runlock.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmark.core.runlock import (
    HEARTBEAT_TIMEOUT_S,
    INFO_NAME,
    ProcessIdentity,
    RecordedRun,
    SuiteBusyError,
    dead_runs,
    process_start,
    suite_lock,
)

ROOT = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid  # reaped: nothing runs under this pid (reuse within the test is vanishingly unlikely)


def test_identity_of_live_dead_reused_and_remote_processes() -> None:
    me = ProcessIdentity.current()
    assert me.alive() is True and me.start == process_start(os.getpid()) != ""
    assert ProcessIdentity(me.host, _dead_pid(), "x/1").alive() is False
    # the same pid started at another time is another process (a reused pid)
    assert ProcessIdentity(me.host, me.pid, me.start + "0").alive() is False
    assert ProcessIdentity("some-other-host", me.pid, me.start).alive() is None


def test_process_start_parses_comm_with_spaces_and_parentheses(tmp_path: Path) -> None:
    exe = tmp_path / "odd (name) x"
    exe.symlink_to(sys.executable)
    p = subprocess.Popen([str(exe), "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{p.pid}/comm").read_text().strip() != "odd (name) x" and time.monotonic() < deadline:
            time.sleep(0.01)  # until the exec has renamed the process
        assert ") x) " in Path(f"/proc/{p.pid}/stat").read_text()
        start = process_start(p.pid)
        ticks = int(start.split("/")[1])  # field 22: clock ticks since boot, after our own start
        assert ticks >= int(process_start(os.getpid()).split("/")[1])
    finally:
        p.kill()
        p.wait()


def test_dead_runs_rules() -> None:
    now = 1_000_000.0
    me = ProcessIdentity.current()
    gone = ProcessIdentity(me.host, _dead_pid(), "b/1")
    remote = ProcessIdentity("far-away", 42, "b/7")
    stale = now - HEARTBEAT_TIMEOUT_S - 60
    runs = [
        RecordedRun("mine", "parent", me, stale),  # our own runs are never dead, however old the beat
        RecordedRun("local-dead", "parent", gone, now),  # same host, process gone: dead at once
        RecordedRun("remote-stale", "parent", remote, stale),  # another host, but a sibling beat recently
        RecordedRun("remote-child", "child", remote, now - 10),
        RecordedRun("remote-dead", "p", ProcessIdentity("far-away", 43, "b/9"), stale),
        RecordedRun("legacy", "p", None, stale),  # run written before owner tags: by its start time
        RecordedRun("legacy-new", "p", None, now - 5),
    ]
    got = {r.run_id: why for r, why in dead_runs(runs, now=now)}
    assert set(got) == {"local-dead", "remote-dead", "legacy"}
    assert got["local-dead"] == "the process is gone"
    assert got["remote-dead"] == "no heartbeat for 31 min (timeout 30 min)"
    assert dead_runs(runs, timeout_s=HEARTBEAT_TIMEOUT_S + 120, now=now) == [(runs[1], "the process is gone")]


def _holder(folder: Path, seconds: float) -> subprocess.Popen[str]:
    code = textwrap.dedent(f"""
        import sys, time
        from benchmark.core.runlock import suite_lock
        with suite_lock({str(folder)!r}, command="qarm-bench run holder"):
            print("locked", flush=True)
            time.sleep({seconds})
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout is not None and p.stdout.readline() == "locked\n"
    return p


def test_second_holder_fails_naming_the_first_and_a_killed_holder_frees_the_lock(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "suite"
    p = _holder(folder, 60)
    try:
        with pytest.raises(SuiteBusyError) as e, suite_lock(folder):
            pass
        msg = str(e.value)
        assert f"pid {p.pid} on host {ProcessIdentity.current().host}" in msg, msg
        assert "qarm-bench run holder" in msg and f"kill {p.pid}" in msg
    finally:
        p.send_signal(signal.SIGKILL)  # no cleanup runs: the stale info file stays behind
        p.wait()
    assert (folder / INFO_NAME).exists()
    t0 = time.monotonic()
    with suite_lock(folder, command="me") as info:  # the kernel released the flock with the process
        assert info is not None and info.pid == os.getpid() and info.command == "me"
        with suite_lock(folder):  # re-entrant within one process
            pass
        assert (folder / INFO_NAME).exists()
    assert time.monotonic() - t0 < 2
    assert not (folder / INFO_NAME).exists()  # a clean exit removes the info file
