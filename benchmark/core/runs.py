"""One folder per invocation of a suite, and the `latest` pointer to the last complete one.

    runs/<suite>/
      artifacts/<stage>/<key>/     the stage cache, shared by every invocation
      <run-id>/                    one invocation: results.json, report.md/.json/.html, plots/
        sweep/<key>=<value>/       a sweep's invocation: the same files per value
      latest -> <run-id>           the last complete invocation: a relative symlink replaced atomically (a
                                   plain file holding the run id where a symlink cannot be made)

run-id: the invocation's UTC start time, sortable (20261205T172301Z), a dash and 6 hex digits of the hash of
its overrides and --quick (a second invocation in the same second gets a `.1`, `.2` suffix). `latest` is
written only after the run's report and results.json are, so it never names an unfinished run. A suite folder
from before this layout (results.json directly in runs/<suite>/) is still read when it has no `latest`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from pathlib import Path

from benchmark.core.configlib import stable_hash
from benchmark.core.errors import QarmBenchError

LATEST = "latest"
RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}(\.\d+)?$")


def new_run_id(suite_dir: Path, overrides: Mapping[str, str], quick: bool, now: dt.datetime | None = None) -> str:
    """A run id not yet taken under suite_dir: UTC time stamp + hash of (overrides, quick)."""
    stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"{stamp}-{stable_hash(dict(sorted(overrides.items())), bool(quick), length=6)}"
    run_id, n = base, 0
    while (suite_dir / run_id).exists():
        n += 1
        run_id = f"{base}.{n}"
    return run_id


def run_ids(suite_dir: Path) -> list[str]:
    """The run folders under suite_dir, oldest first (complete or not)."""
    if not suite_dir.is_dir():
        return []
    return sorted(p.name for p in suite_dir.iterdir() if p.is_dir() and RUN_ID.match(p.name))


def point_latest(suite_dir: Path, run_id: str) -> None:
    """Make runs/<suite>/latest name run_id: a relative symlink renamed over the old one (atomic), or where the
    file system refuses symlinks, a file holding the id (written to a temporary name, then renamed)."""
    tmp = suite_dir / f".{LATEST}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(run_id, target_is_directory=True)
    except OSError:
        tmp.write_text(run_id + "\n", encoding="utf-8")
    tmp.replace(suite_dir / LATEST)


def latest_run_id(suite_dir: Path) -> str | None:
    """The run id `latest` names (symlink or file), or None when there is none."""
    path = suite_dir / LATEST
    if path.is_symlink():
        return Path(os.readlink(path)).name
    if path.is_file():
        return path.read_text(encoding="utf-8").strip() or None
    return None


def resolve_run(suite_dir: Path, run_id: str | None = None) -> Path:
    """The folder of run `run_id` of a suite (a run id, or `<run-id>/sweep/<key>=<value>`), default its latest
    complete run; a suite folder of the old layout (results.json in it, no `latest`) is its own run."""
    present = run_ids(suite_dir)
    if run_id:
        folder = suite_dir / run_id
        if not folder.is_dir() or run_id.split("/")[0] not in present:
            listed = ", ".join(present) or "none"
            raise QarmBenchError(f"{suite_dir}: no run '{run_id}'; the runs present are: {listed}")
        return folder
    latest = latest_run_id(suite_dir)
    if latest is not None:
        if not (suite_dir / latest).is_dir():
            raise QarmBenchError(f"{suite_dir / LATEST}: names run '{latest}', which is not there; pass --run "
                                 f"with one of: {', '.join(present) or 'none'}")
        return suite_dir / latest
    if (suite_dir / "results.json").exists():
        return suite_dir
    if present:
        raise QarmBenchError(f"{suite_dir}: no complete run yet (no '{LATEST}'); unfinished runs: "
                             f"{', '.join(present)}; pass --run ID to read one, or rerun `qarm-bench run`")
    raise QarmBenchError(f"{suite_dir}: no results for suite '{suite_dir.name}' yet; run `qarm-bench run` first")
