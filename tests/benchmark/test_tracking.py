"""MLflow tracking against a real temporary sqlite store, read back with MlflowClient."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from benchmark.core.errors import TrackingError
from benchmark.tracking.store import Tracker, resolve_tracking_uri
from benchmark.tracking.ui import ui_command


def test_uri_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri("", "runs") == "sqlite:///runs/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.invalid:5000")
    assert resolve_tracking_uri("", "runs") == "http://example.invalid:5000"
    assert resolve_tracking_uri("sqlite:///x.db", "runs") == "sqlite:///x.db"


def test_parent_and_two_children_read_back(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "suite-x", artifact_root=tmp_path / "mlartifacts")
    tracker.check()
    report = tmp_path / "report.md"
    report.write_text("# report\n")
    with tracker.parent_run("invocation", params={"suite.name": "suite-x", "rank.epochs": 2},
                            tags={"config_hash": "abc123"}) as parent:
        for seed in (0, 1):
            with tracker.child_run(f"dlrm/id_only/seed{seed}", params={"seed": seed},
                                   tags={"variant": "id_only", "model": "dlrm", "seed": seed}) as child:
                for epoch in range(3):
                    child.log_metrics({"val_auc": 0.6 + 0.01 * epoch, "recall@10": 0.5}, step=epoch)
                child.log_metrics({"test_auc": 0.7 + seed, "nan_metric": float("nan")})
        parent.log_artifact(report)
        parent.log_dict({"a": 1}, "stats/data.json")

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("suite-x")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.run_id]
    assert len(parents) == 1 and len(children) == 2
    p = parents[0]
    assert p.info.status == "FINISHED" and p.data.params["rank.epochs"] == "2"
    assert p.data.tags["config_hash"] == "abc123" and "git_sha" in p.data.tags
    assert "version.torch" in p.data.tags and "version.mlflow" in p.data.tags
    names = {a.path for a in client.list_artifacts(p.info.run_id)}
    assert names == {"report.md", "stats"}
    c0 = next(r for r in children if r.data.tags["seed"] == "0")
    history = client.get_metric_history(c0.info.run_id, "val_auc")
    assert [m.step for m in history] == [0, 1, 2]
    assert [round(m.value, 6) for m in history] == [0.6, 0.61, 0.62]
    assert c0.data.metrics["recall_at_10"] == 0.5  # '@' is not allowed in MLflow names
    assert "nan_metric" not in c0.data.metrics
    assert c0.data.tags["mlflow.runName"] == "dlrm/id_only/seed0"


def test_failed_child_is_marked_failed(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "s", artifact_root=tmp_path / "a")
    with pytest.raises(ValueError), tracker.parent_run("p"), tracker.child_run("c"):
        raise ValueError("boom")
    runs = MlflowClient(tracking_uri=uri).search_runs([tracker.experiment_id])
    assert {r.info.status for r in runs} == {"FAILED"}


def test_unreachable_server_is_reported_fast() -> None:
    with socket.socket() as s:  # a closed port on loopback
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tracker = Tracker(f"http://127.0.0.1:{port}", "s")
    t0 = time.monotonic()
    with pytest.raises(TrackingError, match=rf"tracking server http://127.0.0.1:{port} is unreachable"):
        tracker.check()
    assert time.monotonic() - t0 < 10


def test_uncreatable_store_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TrackingError, match="cannot create the tracking store folder"):
        Tracker(f"sqlite:///{blocker / 'sub' / 'mlflow.db'}", "s").check()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_qarm_bench_ui_answers_http_then_stops(tmp_path: Path) -> None:
    """`qarm-bench ui` serves the store on 127.0.0.1; stopped by its PID."""
    Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", "s", tmp_path / "runs" / "mlartifacts").check()
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "ui", "--port", str(port), "--runs-dir", "runs"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in first
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    status = r.status
            except OSError:
                time.sleep(0.5)
        assert status == 200
    finally:
        os.kill(proc.pid, 15)  # the command's own PID: it must take the server down with it
        assert proc.wait(timeout=30) == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def test_ui_command_binds_loopback() -> None:
    cmd = ui_command("sqlite:///runs/mlflow.db", 5000, None)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and "--workers" in cmd



@pytest.fixture(scope="module")
def dashboard_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One store for the dashboard tests (a new sqlite store costs seconds): an experiment made before the tags
    existed, two suites with a described parent run each, and an experiment without runs."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("dash")
    uri = f"sqlite:///{root / 'runs' / 'mlflow.db'}"
    Tracker(uri, "suite-b", artifact_root=root / "a").check()
    MlflowClient(tracking_uri=uri).create_experiment("made-before-the-tags")
    MlflowClient(tracking_uri=uri).create_experiment("empty")
    for suite in ("suite-b", "suite-a"):
        with Tracker(uri, suite, artifact_root=root / "a").parent_run("p") as parent:
            parent.set_description(f"{suite}.\n\n**Headline** ...")
    return uri, root


def test_experiments_are_dressed_for_the_training_runs_view(dashboard_store: tuple[str, Path]) -> None:
    import json

    from mlflow.tracking import MlflowClient

    from benchmark.tracking.dashboard import (
        EXPERIMENT_KIND,
        EXPERIMENT_KIND_TAG,
        RUNS_VIEW_ID,
        RUNS_VIEW_METRICS,
        RUNS_VIEW_TAG,
        runs_view_url,
    )

    uri, _ = dashboard_store
    client = MlflowClient(tracking_uri=uri)
    old_id = client.get_experiment_by_name("made-before-the-tags").experiment_id
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(old_id).tags
    tracker = Tracker(uri, "made-before-the-tags")
    tracker.check()  # opening an existing experiment dresses it
    assert tracker.experiment_id == old_id
    tags = client.get_experiment(old_id).tags
    assert tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    view = json.loads(tags[RUNS_VIEW_TAG])
    state = json.loads(view["state"])
    assert state["orderByKey"] == "metrics.`test_all_auc`" and state["orderByAsc"] is False
    assert state["selectedColumns"][:len(RUNS_VIEW_METRICS)] == [f"metrics.`{m}`" for m in RUNS_VIEW_METRICS]
    Tracker(uri, "made-before-the-tags").check()  # idempotent: the view is left as it was (same updatedAt)
    assert json.loads(client.get_experiment(old_id).tags[RUNS_VIEW_TAG]) == view
    assert runs_view_url("http://127.0.0.1:5000/", "7") == (
        f"http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey={RUNS_VIEW_ID}")


def test_parent_description_and_runs_views(dashboard_store: tuple[str, Path]) -> None:
    from mlflow.tracking import MlflowClient

    from benchmark.tracking.dashboard import runs_view_url
    from benchmark.tracking.ui import runs_views

    uri, _ = dashboard_store
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("suite-a").experiment_id])
    assert run.data.tags["mlflow.note.content"] == "suite-a.\n\n**Headline** ..."
    ids = {n: client.get_experiment_by_name(n).experiment_id for n in ("suite-a", "suite-b")}
    base = "http://127.0.0.1:5001"
    # every experiment with runs, by name; "empty" and "made-before-the-tags" have none
    assert runs_views(uri, None, base) == [(n, runs_view_url(base, ids[n])) for n in ("suite-a", "suite-b")]
    assert runs_views(uri, "suite-b", base) == [("suite-b", runs_view_url(base, ids["suite-b"]))]
    with pytest.raises(TrackingError, match=r"no experiment 'nope' in the store .*suite-a"):
        runs_views(uri, "nope", base)


def test_ui_of_an_unknown_suite_is_a_user_error(dashboard_store: tuple[str, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from benchmark.cli import main

    uri, root = dashboard_store
    port = _free_port()
    assert main(["ui", "nope", "--port", str(port), "--runs-dir", str(root / "runs"), "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert "no experiment 'nope'" in err and "Traceback" not in err
    with pytest.raises(OSError):  # the server started beside the lookup is stopped with the error
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def test_readme_lists_the_metric_name_contract() -> None:
    """README "Metric names (a contract)" names every metric the saved runs view and the browser test rely on."""
    from benchmark.tracking.dashboard import RUNS_VIEW_METRICS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Metric names (a contract)", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z_<>]+)`", section))
    contract = {f"test_{s}_{m}" for s in ("all", "cold", "warm") for m in ("auc", "gauc", "logloss")}
    assert contract <= listed and set(RUNS_VIEW_METRICS) <= contract
    assert {"best_epoch", "best_val_auc", "train_loss", "val_auc"} <= listed


def test_views_follow_the_newest_invocation(tmp_path: Path) -> None:
    """Issue 23 point 3: parent and children share the `invocation` tag; both saved views filter on the newest
    parent (the filter is checked by MLflow's own search); the second view groups by model and variant."""
    import json

    from mlflow.tracking import MlflowClient

    from benchmark.tracking.dashboard import GROUPED_VIEW_TAG, RUNS_VIEW_TAG

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "s", artifact_root=tmp_path / "a")
    client = MlflowClient(tracking_uri=uri)
    for name in ("first", "second"):
        with tracker.parent_run(name) as parent:
            for seed in (0, 1):
                with tracker.child_run(f"dlrm/id_only/seed{seed}", tags={"model": "dlrm", "variant": "id_only"}):
                    pass
    exp = client.get_experiment(tracker.experiment_id)
    runs = {json.loads(exp.tags[t])["name"]: json.loads(json.loads(exp.tags[t])["state"])
            for t in (RUNS_VIEW_TAG, GROUPED_VIEW_TAG)}
    for state in runs.values():
        assert state["searchFilter"] == f"tags.invocation = '{parent.run_id}'"
        shown = client.search_runs([tracker.experiment_id], state["searchFilter"])
        assert sorted(r.info.run_name for r in shown) == ["dlrm/id_only/seed0", "dlrm/id_only/seed1", "second"]
    grouped = runs["QARM-Bench: means over seeds by model x variant"]["groupBy"]
    assert grouped == {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "model"},
                                                                       {"mode": "tag", "groupByData": "variant"}]}


def test_stage_keys_are_one_artifact_and_one_tag() -> None:
    from benchmark.engine.logs import log_stage_keys, stage_keys_hash

    logged: dict[str, object] = {}

    class Parent:
        def log_dict(self, obj: object, name: str) -> None:
            logged[name] = obj

        def set_tags(self, tags: dict[str, str]) -> None:
            logged.update(tags)

    log_stage_keys(Parent(), {0: {"pairs": "p0", "data": "d"}, 1: {"pairs": "p1", "data": "d"}})
    assert logged["stage_keys.json"] == {"0": {"data": "d", "pairs": "p0"}, "1": {"data": "d", "pairs": "p1"}}
    assert logged["stage_keys_hash"] == stage_keys_hash({"data": "d", "pairs": "p0"}) != stage_keys_hash({"data": "e"})
    assert not [k for k in logged if k.startswith("stage.")]


def test_ui_waits_for_the_server_and_names_its_log(tmp_path: Path) -> None:
    import subprocess
    import sys

    from benchmark.tracking.ui import wait_until_up

    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    proc.wait()
    with pytest.raises(TrackingError, match=r"exited with status 3 before answering; see .*mlflow-ui\.log"):
        wait_until_up(proc, f"http://127.0.0.1:{_free_port()}", tmp_path / "mlflow-ui.log")
