"""One `qarm-bench run` of a suite at a time, and who a process is (issue 14 point 5).

    runs/<suite>/.lock        flock(2)-ed for the whole run; the kernel drops the lock when the process
                              dies for any reason (SIGKILL, OOM, power), so a dead run never blocks the next
    runs/<suite>/.lock.json   {pid, host, start, since, command} of the holder, for the message a second
                              run prints; removed on a clean exit, rewritten by the next holder

A second run of the same suite fails at once with `SuiteBusyError` (exit 2) naming the first process;
the stage cache under runs/<suite>/artifacts is therefore only ever written by one process.

`ProcessIdentity` names a process across time: host, pid and the process's start time
(/proc/<pid>/stat field 22, in clock ticks since boot, with the boot id), so a pid the kernel reused
for another process is not mistaken for the original. The tracker tags every MLflow run with it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmark.core.errors import QarmBenchError

LOCK_NAME = ".lock"
INFO_NAME = ".lock.json"


class SuiteBusyError(QarmBenchError):
    """Another live process is running the same suite (same runs/<suite>/ folder)."""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str:
    """"<boot id>/<start ticks>" of a live process on this host, "" when it does not exist or cannot
    be read (no /proc: other systems; then only the pid is compared)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # field 2 (comm) may hold spaces and parentheses: split after the last ")"; field 22 is starttime
    fields = stat[stat.rindex(")") + 2:].split()
    return f"{_boot_id()}/{fields[22 - 3]}"


@dataclass(frozen=True)
class ProcessIdentity:
    host: str
    pid: int
    start: str  # process_start(pid) when it was recorded; "" where /proc is not available

    @classmethod
    def current(cls) -> ProcessIdentity:
        return cls(socket.gethostname(), os.getpid(), process_start(os.getpid()))

    @property
    def local(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool | None:
        """True/False for a process of this host; None for another host (ask its heartbeat instead)."""
        if not self.local:
            return None
        if self.start:
            return process_start(self.pid) == self.start  # "" (gone) or another process's start
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def __str__(self) -> str:
        return f"pid {self.pid} on host {self.host}"


@dataclass(frozen=True)
class LockInfo:
    pid: int
    host: str
    start: str
    since: str  # ISO time the lock was taken (UTC)
    command: str

    @property
    def owner(self) -> ProcessIdentity:
        return ProcessIdentity(self.host, self.pid, self.start)


# locks this process holds: folder -> [fd, depth] (re-entrant: main_run and SuiteRun.run both take it)
_HELD: dict[Path, list[int]] = {}


def _read_info(folder: Path) -> LockInfo | None:
    try:
        return LockInfo(**json.loads((folder / INFO_NAME).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _busy_message(folder: Path, info: LockInfo | None) -> str:
    if info is None:
        return (f"{folder}: this suite is already being run by another process (it holds {folder / LOCK_NAME}); "
                "wait for it to finish or stop it")
    how = f"stop it with `kill {info.pid}`" if info.owner.local else f"stop it on host {info.host}"
    return (f"{folder}: this suite is already being run by pid {info.pid} on host {info.host} since {info.since} "
            f"({info.command}); wait for it to finish or {how}")


def _info_of_holder(folder: Path) -> LockInfo | None:
    """The holder's info; it writes it right after locking, so wait a moment for a fresh one."""
    deadline = time.monotonic() + 1.0
    while True:
        info = _read_info(folder)
        if info is not None and info.owner.alive() is not False:
            return info
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


@contextlib.contextmanager
def suite_lock(folder: Path, command: str | None = None) -> Iterator[LockInfo | None]:
    """Hold runs/<suite>/.lock for the block; SuiteBusyError at once when another process holds it.

    Re-entrant within one process. The lock is released when the block ends or the process dies.
    """
    folder = Path(folder).resolve()
    if folder in _HELD:
        _HELD[folder][1] += 1
        try:
            yield _read_info(folder)
        finally:
            _HELD[folder][1] -= 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SuiteBusyError(_busy_message(folder, _info_of_holder(folder))) from None
    me = ProcessIdentity.current()
    info = LockInfo(me.pid, me.host, me.start, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    command if command is not None else " ".join(["qarm-bench", *sys.argv[1:]]))
    tmp = folder / f"{INFO_NAME}.{me.pid}"
    tmp.write_text(json.dumps(asdict(info)))
    os.replace(tmp, folder / INFO_NAME)
    _HELD[folder] = [fd, 1]
    try:
        yield info
    finally:
        del _HELD[folder]
        with contextlib.suppress(OSError):
            (folder / INFO_NAME).unlink()  # before unlocking: a new holder's info is never removed
        os.close(fd)  # closing the only descriptor releases the flock


# ---------------------------------------------------------------- which recorded runs are dead

HEARTBEAT_TIMEOUT_S = 30 * 60.0  # a run of another host whose process has not beaten for this long is dead


@dataclass(frozen=True)
class RecordedRun:
    """A RUNNING run as the store has it: its owner (None when the run predates owner tags) and its
    last heartbeat (unix seconds; the run's start time when it never beat)."""

    run_id: str
    name: str
    owner: ProcessIdentity | None
    heartbeat: float


def dead_runs(runs: list[RecordedRun], timeout_s: float = HEARTBEAT_TIMEOUT_S,
              now: float | None = None) -> list[tuple[RecordedRun, str]]:
    """The runs whose process is gone, each with the reason.

    Same host: the owner's pid is not alive, or now belongs to a process started at another time.
    Another host (or no owner recorded): the owner's newest heartbeat over all its runs is older than
    `timeout_s`. The calling process's own runs are never dead.
    """
    now = time.time() if now is None else now
    me = ProcessIdentity.current()
    newest: dict[ProcessIdentity | None, float] = {}
    for r in runs:
        if r.owner is not None:
            newest[r.owner] = max(newest.get(r.owner, r.heartbeat), r.heartbeat)
    out = []
    for r in runs:
        if r.owner == me:
            continue
        alive = r.owner.alive() if r.owner is not None else None
        if alive is False:
            reused = r.owner is not None and process_start(r.owner.pid) != ""
            out.append((r, "its pid now belongs to a later process" if reused else "the process is gone"))
        elif alive is None:
            last = newest.get(r.owner, r.heartbeat) if r.owner is not None else r.heartbeat
            if now - last > timeout_s:
                out.append((r, f"no heartbeat for {(now - last) / 60:.0f} min (timeout {timeout_s / 60:g} min)"))
    return out
