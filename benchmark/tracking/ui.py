"""`qarm-bench ui`: serve a suite's MLflow store on 127.0.0.1 and print the direct URLs of each suite's saved views
and newest parent run (benchmark.tracking.dashboard); the server runs as `python -m mlflow ui` in its own process
group, its output (the access log) goes to `<runs_dir>/mlflow-ui.log`, and the URLs are printed only once the
server answers /health.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from benchmark.core.errors import TrackingError
from benchmark.tracking.dashboard import (
    GROUPED_VIEW_ID,
    dress_experiment,
    latest_invocation,
    run_url,
    runs_view_url,
)
from benchmark.tracking.store import Tracker, resolve_tracking_uri, sqlite_path


def ui_command(tracking_uri: str, port: int, artifacts: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    if artifacts is not None:
        cmd += ["--default-artifact-root", artifacts.resolve().as_uri()]
    return cmd


START_TIMEOUT_S = 300.0  # a cold `mlflow ui` on a busy machine takes tens of seconds


def main_ui(args: Any) -> int:
    """`qarm-bench ui`: serve the suite's store on 127.0.0.1 until interrupted."""
    uri = args.tracking_uri or resolve_tracking_uri("", args.runs_dir)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise TrackingError(f"no tracking store at {db}: run `qarm-bench run` first (or pass --tracking-uri)")
    if shutil.which("mlflow") is None and not _has_module("mlflow"):
        raise TrackingError("mlflow is not installed in this environment; run `make run` or scripts/setup.sh")
    cmd = ui_command(uri, args.port, db.parent / "mlartifacts" if db is not None else None)
    log_path = Path(args.runs_dir) / "mlflow-ui.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{args.port}"
    # mlflow ui runs its server and workers in a process group of their own; Ctrl-C or a SIGTERM to this
    # process (`kill <pid>`) stops the whole group, so no server outlives the command.
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        links = dashboard_links(uri, args.suite, base)  # while the server starts: dress the experiments
        wait_until_up(proc, base, log_path)
        print(f"MLflow UI: {base}  (store {uri}; server log {log_path}; pid {os.getpid()}; Ctrl-C stops it)",
              flush=True)
        for label, url in links:
            print(f"  {label}: {url}", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        _stop_server(proc)
        return 0
    except BaseException:
        _stop_server(proc)  # e.g. an unknown suite: no server outlives the error
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_until_up(proc: subprocess.Popen[bytes], base: str, log_path: Path,
                  timeout_s: float = START_TIMEOUT_S) -> None:
    """Poll `<base>/health` until it answers 200; a server that exits or stays silent is a TrackingError naming
    its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TrackingError(f"the MLflow UI server exited with status {proc.returncode} before answering; "
                                f"see {log_path}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:  # noqa: S310 (our own local server)
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TrackingError(f"the MLflow UI server did not answer {base}/health within {timeout_s:.0f}s; see {log_path}")


def dashboard_links(tracking_uri: str, suite: str | None, base_url: str) -> list[tuple[str, str]]:
    """(label, URL) of each suite's runs view, its grouped view (means over seeds by model x variant) and its newest
    parent run, every one in model-training mode."""
    out = []
    client = Tracker(tracking_uri, suite or "").client
    for name, url in runs_views(tracking_uri, suite, base_url):
        exp_id = client.get_experiment_by_name(name).experiment_id
        out += [(f"runs of {name}", url),
                (f"means over seeds of {name}", runs_view_url(base_url, exp_id, GROUPED_VIEW_ID))]
        parent = latest_invocation(client, exp_id)
        if parent:
            out.append((f"newest parent run of {name}", run_url(base_url, exp_id, parent)))
    return out


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
