"""A tracking server as the MLflow store (issue 24, several machines): `suite.tracking_uri = "http://..."` loads,
rank 0 alone gets a tracker (the other ranks a NullTracker), and a real `mlflow server` receives its runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from benchmark.config.suite import load_config
from benchmark.tracking.store import NullTracker, Tracker, tracker_for

URI = "http://10.1.2.3:5000"


def test_config_takes_a_server_uri_and_rank_0_alone_logs(tmp_path: Path) -> None:
    cfg = load_config("synthetic-tiny", [f"suite.tracking_uri={URI}", f"suite.runs_dir={tmp_path}"])
    assert cfg.suite.tracking_uri == URI
    main = tracker_for(cfg.suite.name, cfg.suite.tracking_uri, cfg.suite.runs_dir, is_main=True)
    assert isinstance(main, Tracker) and main.tracking_uri == URI and main.artifact_root is None
    other = tracker_for(cfg.suite.name, cfg.suite.tracking_uri, cfg.suite.runs_dir, is_main=False)
    assert isinstance(other, NullTracker)
    other.check()  # reaches nothing
    with other.parent_run("x", params={}, tags={}) as parent, other.child_run("c", params={}, tags={}) as child:
        parent.log_text("{}", "config.json")
        child.log_metrics({"auc": 0.5})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_runs_reach_a_real_mlflow_server(tmp_path: Path) -> None:
    """The recipe of docs/gpu-and-distributed.md: `mlflow server` on node 0, every node's config pointing at it."""
    from mlflow.tracking import MlflowClient

    port = _free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
           str(tmp_path / "artifacts")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "MLFLOW_TRACKING_URI": ""}, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline, up = time.monotonic() + 120, False
        while time.monotonic() < deadline and not up:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    up = r.status == 200
            except OSError:
                time.sleep(0.5)
        assert up, "mlflow server did not start"
        tracker = tracker_for("suite-a", uri, tmp_path / "runs", is_main=True)
        tracker.check()
        with tracker.parent_run("suite-a run", params={"rank.epochs": 1}, tags={"world_size": 2}) as parent:
            parent.log_text("{}", "config/resolved.json")
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name("suite-a")
        [run] = client.search_runs([exp.experiment_id])
        assert run.data.tags["world_size"] == "2" and run.data.params["rank.epochs"] == "1"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
