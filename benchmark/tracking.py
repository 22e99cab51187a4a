"""MLflow tracking: the ONLY module of the project that imports mlflow (a test enforces it).

Layout of a suite in MLflow:
    experiment  <suite name>
      parent run   one per `qarm-bench run` invocation: resolved config, data/pair/code stats, plots, report
        child run  one per (variant, model, seed) cell: the cell's config slice, metrics per epoch and final

Store: sqlite `runs/mlflow.db` (relative to the working directory) unless the config's `suite.tracking_uri`
or `$MLFLOW_TRACKING_URI` names another (a remote server works). Artifacts of a local sqlite store go to
`<runs_dir>/mlartifacts/`. Telemetry is off. `check()` reports an unreachable store before any training.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmark.errors import TrackingError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

PARAM_MAX = 6000  # MLflow 3 limit on a param value's length
VERSIONED_PACKAGES = ("qarm-bench", "torch", "torchrec", "fbgemm-gpu-cpu", "faiss-cpu", "faiss-gpu", "polars",
                      "mlflow", "transformers", "numpy")


def resolve_tracking_uri(config_uri: str = "", runs_dir: str | Path = "runs") -> str:
    """config `suite.tracking_uri` > $MLFLOW_TRACKING_URI > sqlite:///<runs_dir>/mlflow.db (relative to cwd)."""
    if config_uri:
        return config_uri
    env = os.environ.get("MLFLOW_TRACKING_URI", "")
    if env:
        return env
    return f"sqlite:///{Path(runs_dir) / 'mlflow.db'}"


def _sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):])
    return None


def git_sha(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=cwd or Path(__file__).resolve().parent)
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=cwd or Path(__file__).resolve().parent).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def _clean_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """MLflow forbids '@' in names; drop non-finite and non-numeric values (NaN AUC on a one-label slice)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(float(v)):
            out[k.replace("@", "_at_")] = float(v)
    return out


@dataclass
class RunHandle:
    """One MLflow run; all logging goes through the client (no global fluent state)."""

    client: Any
    run_id: str
    name: str
    _tmp: list[Path] = field(default_factory=list)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:PARAM_MAX]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # log_batch takes at most 100 params per call
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, v, ts, step or 0) for k, v in sorted(_clean_metrics(metrics).items())]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:PARAM_MAX]) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        p = Path(path)
        if p.is_dir():
            self.client.log_artifacts(self.run_id, str(p), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(p), artifact_path)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_dict(self, obj: Any, name: str) -> None:
        self.client.log_text(self.run_id, json.dumps(obj, indent=2, sort_keys=True, default=str), name)


class Tracker:
    """An experiment in one tracking store; `parent_run()` then `child_run()` per cell."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifact_root = artifact_root
        self._client: Any = None
        self._experiment_id: str | None = None
        self._parent: RunHandle | None = None

    @classmethod
    def for_suite(cls, suite_name: str, config_uri: str = "", runs_dir: str | Path = "runs") -> Tracker:
        uri = resolve_tracking_uri(config_uri, runs_dir)
        db = _sqlite_path(uri)
        root = (db.parent / "mlartifacts").resolve() if db is not None else None
        return cls(uri, suite_name, root)

    # -- setup ---------------------------------------------------------------------------------

    def check(self) -> None:
        """Fail fast (TrackingError) when the store cannot be reached or written, before any training."""
        if self.tracking_uri.startswith(("http://", "https://")):
            url = self.tracking_uri.rstrip("/") + "/health"
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (user-given tracking server)
                    if resp.status >= 400:
                        raise TrackingError(f"tracking server {self.tracking_uri} answered HTTP {resp.status}")
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                raise TrackingError(f"tracking server {self.tracking_uri} is unreachable ({e}); start it, or unset "
                                    "MLFLOW_TRACKING_URI to use the local sqlite store runs/mlflow.db") from None
        db = _sqlite_path(self.tracking_uri)
        if db is not None:
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise TrackingError(f"cannot create the tracking store folder {db.parent}: {e}") from None
        try:
            self.experiment_id  # noqa: B018 (creates the experiment; touches the store)
        except TrackingError:
            raise
        except Exception as e:  # mlflow raises many types for a broken store
            raise TrackingError(f"tracking store {self.tracking_uri} cannot be used: {type(e).__name__}: {e}") from None

    @property
    def client(self) -> Any:
        if self._client is None:
            import logging

            logging.getLogger("mlflow").setLevel(logging.WARNING)
            logging.getLogger("alembic").setLevel(logging.WARNING)
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is not None:
                self._experiment_id = exp.experiment_id
            else:
                location = None
                if self.artifact_root is not None:
                    self.artifact_root.mkdir(parents=True, exist_ok=True)
                    location = (self.artifact_root / self.experiment).as_uri()
                self._experiment_id = self.client.create_experiment(self.experiment, artifact_location=location)
        return self._experiment_id

    # -- runs ----------------------------------------------------------------------------------

    def _create(self, name: str, tags: Mapping[str, Any], parent: RunHandle | None) -> RunHandle:
        all_tags = {"mlflow.runName": name, **{k: str(v) for k, v in tags.items()}}
        if parent is not None:
            all_tags["mlflow.parentRunId"] = parent.run_id
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        return RunHandle(self.client, run.info.run_id, name)

    @contextlib.contextmanager
    def _run(self, handle: RunHandle, params: Mapping[str, Any] | None) -> Iterator[RunHandle]:
        """Log params, yield, then mark the run FINISHED, FAILED (exception) or KILLED (Ctrl-C)."""
        if params:
            handle.log_params(params)
        status = "FAILED"
        try:
            yield handle
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self.client.set_terminated(handle.run_id, status)

    @contextlib.contextmanager
    def parent_run(self, name: str, params: Mapping[str, Any] | None = None,
                   tags: Mapping[str, Any] | None = None) -> Iterator[RunHandle]:
        base = {"git_sha": git_sha(), **{f"version.{k}": v for k, v in package_versions().items()}}
        handle = self._create(name, {**base, **(tags or {})}, None)
        self._parent = handle
        try:
            with self._run(handle, params) as h:
                yield h
        finally:
            self._parent = None

    @contextlib.contextmanager
    def child_run(self, name: str, params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, Any] | None = None) -> Iterator[RunHandle]:
        if self._parent is None:
            raise RuntimeError("child_run() outside parent_run()")
        with self._run(self._create(name, tags or {}, self._parent), params) as h:
            yield h


# ---- qarm-bench ui ---------------------------------------------------------------------------


def ui_command(tracking_uri: str, port: int, artifacts: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    if artifacts is not None:
        cmd += ["--default-artifact-root", artifacts.resolve().as_uri()]
    return cmd


def main_ui(args: Any) -> int:
    """`qarm-bench ui`: serve the suite's store on 127.0.0.1 until interrupted."""
    uri = args.tracking_uri or resolve_tracking_uri("", args.runs_dir)
    db = _sqlite_path(uri)
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
        return proc.wait()
    except KeyboardInterrupt:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
