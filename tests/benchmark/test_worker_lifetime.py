"""Suite workers die with the suite: a SIGKILLed parent (no cleanup runs) leaves no CellPool worker behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The parent: a CellPool of 2 workers, each holding one task that marks its pid in a folder and sleeps.
# Module-level code also runs in every spawned worker (it imports the parent's script as __mp_main__), so
# NO_PRCTL can hide Linux from the worker and leave it the portable getppid() poll only.
PARENT = """
import os, sys, time
from pathlib import Path

if os.environ.get("NO_PRCTL"):
    sys.platform = "unknown"

from benchmark.engine.pool import CellPool


def hold(folder: str) -> None:
    Path(folder, str(os.getpid())).touch()
    time.sleep(60)


if __name__ == "__main__":
    pool = CellPool(2, 1)
    for _ in range(2):  # a worker busy in hold() takes no second task: one task per worker
        pool.executor.submit(hold, sys.argv[1])
    time.sleep(60)
"""


def _alive(pid: int) -> bool:
    """Whether pid runs; a zombie (dead, not yet reaped by whichever init adopted it) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: signal 0 only asks whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _wait(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and re-parenting are POSIX")
@pytest.mark.parametrize("mechanism", ["pdeathsig", "poll"])
def test_workers_die_when_the_parent_is_killed(tmp_path: Path, mechanism: str) -> None:
    if mechanism == "pdeathsig" and not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    script, pids_dir = tmp_path / "parent.py", tmp_path / "pids"
    script.write_text(PARENT)
    pids_dir.mkdir()
    root = str(Path(__file__).resolve().parents[2])  # this checkout's benchmark package, in parent and workers
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    env |= {"NO_PRCTL": "1"} if mechanism == "poll" else {}
    parent = subprocess.Popen([sys.executable, str(script), str(pids_dir)], env=env)
    pids: list[int] = []
    try:
        assert _wait(lambda: len(list(pids_dir.iterdir())) == 2, 60), "the workers did not start"
        pids = [int(p.name) for p in pids_dir.iterdir()]
        assert all(_alive(p) for p in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        # pdeathsig: at once; poll: within the 0.5 s poll interval
        assert _wait(lambda: not any(_alive(p) for p in pids), 5), [p for p in pids if _alive(p)]
    finally:
        parent.kill()
        parent.wait(10)
        for pid in pids:  # on failure, do not leave the test's own workers running
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
