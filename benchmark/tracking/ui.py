"""`qarm-bench ui`: serve a suite's MLflow store on 127.0.0.1 and print the direct URL of each suite's runs view
(benchmark.tracking.dashboard); the server runs as `python -m mlflow ui` in its own process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmark.core.errors import TrackingError
from benchmark.tracking.dashboard import dress_experiment, runs_view_url
from benchmark.tracking.store import Tracker, resolve_tracking_uri, sqlite_path


def ui_command(tracking_uri: str, port: int, artifacts: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    if artifacts is not None:
        cmd += ["--default-artifact-root", artifacts.resolve().as_uri()]
    return cmd


def main_ui(args: Any) -> int:
    """`qarm-bench ui`: serve the suite's store on 127.0.0.1 until interrupted."""
    uri = args.tracking_uri or resolve_tracking_uri("", args.runs_dir)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise TrackingError(f"no tracking store at {db}: run `qarm-bench run` first (or pass --tracking-uri)")
    if shutil.which("mlflow") is None and not _has_module("mlflow"):
        raise TrackingError("mlflow is not installed in this environment; run `make run` or scripts/setup.sh")
    cmd = ui_command(uri, args.port, db.parent / "mlartifacts" if db is not None else None)
    # mlflow ui runs its server and workers in a process group of their own; Ctrl-C or a SIGTERM to this
    # process (`kill <pid>`) stops the whole group, so no server outlives the command.
    proc = subprocess.Popen(cmd, start_new_session=True)

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    print(f"MLflow UI: http://127.0.0.1:{args.port}  (store {uri}; pid {os.getpid()}; Ctrl-C stops it)", flush=True)
    try:
        # while the server starts (tens of seconds), dress the experiments and print their runs views
        for name, url in runs_views(uri, args.suite, f"http://127.0.0.1:{args.port}"):
            print(f"  runs of {name}: {url}", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        _stop_server(proc)
        return 0
    except BaseException:
        _stop_server(proc)  # e.g. an unknown suite: no server outlives the error
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_server(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None



def runs_views(tracking_uri: str, suite: str | None, base_url: str) -> list[tuple[str, str]]:
    """(experiment name, runs-view URL) for `suite`, or for every experiment with runs but MLflow's Default.

    Dresses each experiment first, so stores written before the tags existed open the same way.
    """
    tracker = Tracker(tracking_uri, suite or "")
    client = tracker.client
    if suite:
        exp = client.get_experiment_by_name(suite)
        if exp is None:
            known = ", ".join(e.name for e in client.search_experiments() if e.name != "Default") or "none"
            raise TrackingError(f"no experiment '{suite}' in the store {tracking_uri} (experiments: {known}); "
                                f"run `qarm-bench run` for that suite first")
        exps = [exp]
    else:
        exps = [e for e in client.search_experiments() if e.name != "Default" and
                client.search_runs([e.experiment_id], max_results=1)]
    out = []
    for exp in sorted(exps, key=lambda e: e.name):
        dress_experiment(client, exp.experiment_id)
        out.append((exp.name, runs_view_url(base_url, exp.experiment_id)))
    return out
