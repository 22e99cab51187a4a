"""MLflow tracking: the ONLY module of the project that imports mlflow (a test enforces it).

Layout of a suite in MLflow:
    experiment  <suite name>
      parent run   one per `qarm-bench run` invocation: resolved config, data/pair/code stats, plots, report,
                   the item side's cache keys (stage_keys.json)
        child run  one per (variant, model, seed) cell: the cell's config slice, metrics per epoch and final
    Both carry the tag `invocation` = the parent's run id; the experiment's saved views filter on the newest.

Store: sqlite `runs/mlflow.db` (relative to the working directory) unless the config's `suite.tracking_uri`
or `$MLFLOW_TRACKING_URI` names another (a remote server works). Artifacts of a local sqlite store go to
`<runs_dir>/mlartifacts/`. Telemetry is off. `check()` reports an unreachable store before any training.

Runs that end badly (issue 14 point 5): every run carries its owner (tags qarm.owner.{host,pid,start},
see benchmark/core/runlock.py ProcessIdentity) and a heartbeat (tag qarm.heartbeat, unix seconds) refreshed
with every batch the run logs (so every epoch), at every child start and end, and every
HEARTBEAT_INTERVAL_S by a background thread while a parent run is open. `reap_dead_runs()` marks the
RUNNING runs whose process is gone KILLED (tag qarm.killed_reason). Every call to the store is retried
with backoff while sqlite says "database is locked", so processes sharing one sqlite store all finish;
the first use of a fresh sqlite store is serialised by a lock file beside it (`<db>.init-lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import os
import random
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmark.core.errors import TrackingError
from benchmark.core.runlock import HEARTBEAT_TIMEOUT_S, ProcessIdentity, RecordedRun, dead_runs
from benchmark.tracking.dashboard import INVOCATION_TAG, dress_experiment, set_run_description

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

PARAM_MAX = 6000  # MLflow 3 limit on a param value's length
OWNER_TAGS = ("qarm.owner.host", "qarm.owner.pid", "qarm.owner.start")
HEARTBEAT_TAG = "qarm.heartbeat"
KILLED_REASON_TAG = "qarm.killed_reason"
HEARTBEAT_INTERVAL_S = 60.0  # background beat of an open parent run; far below HEARTBEAT_TIMEOUT_S
RETRY_FOR_S = 120.0  # how long a store call is retried while sqlite reports a lock
_TRANSIENT = ("database is locked", "database table is locked", "database schema is locked", "sqlite_busy")
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


def sqlite_path(uri: str) -> Path | None:
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


def is_transient(e: BaseException) -> bool:
    """A store error that goes away when retried: sqlite's lock contention between processes."""
    text = f"{type(e).__name__}: {e}".lower()
    return any(t in text for t in _TRANSIENT)


def retrying(fn: Any, what: str, retry_for_s: float | None = None) -> Any:
    """`fn` retried with jittered exponential backoff (50 ms doubling to 2 s) while it raises a transient
    error; after `retry_for_s` a TrackingError. Every store call of the tracker goes through this."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        limit = RETRY_FOR_S if retry_for_s is None else retry_for_s
        delay, deadline = 0.05, time.monotonic() + limit
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                if not is_transient(e):
                    raise
                if time.monotonic() > deadline:
                    raise TrackingError(f"tracking store stayed locked for {limit:.0f}s ({what}): "
                                        f"{str(e).splitlines()[0]}") from None
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(2 * delay, 2.0)

    return call


class _RetryingClient:
    """An MlflowClient whose every method is `retrying`."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        return retrying(attr, name) if callable(attr) else attr


def owner_tags(me: ProcessIdentity | None = None) -> dict[str, str]:
    me = me or ProcessIdentity.current()
    return dict(zip(OWNER_TAGS, (me.host, str(me.pid), me.start)))


def _owner_of(tags: Mapping[str, str]) -> ProcessIdentity | None:
    host, pid, start = (tags.get(t) for t in OWNER_TAGS)
    if not host or not pid or not pid.isdigit():
        return None
    return ProcessIdentity(host, int(pid), start or "")


def _beat_tag() -> Any:
    from mlflow.entities import RunTag

    return RunTag(HEARTBEAT_TAG, f"{time.time():.3f}")


@dataclass(frozen=True)
class ReapedRun:
    run_id: str
    name: str
    owner: ProcessIdentity | None
    reason: str


def describe_reaped(reaped: list[ReapedRun]) -> list[str]:
    """One line per dead process: "marked 4 runs of a dead process (pid 12 on host h) KILLED: ..."."""
    by_owner: dict[ProcessIdentity | None, list[ReapedRun]] = {}
    for r in reaped:
        by_owner.setdefault(r.owner, []).append(r)
    lines = []
    for owner, runs in by_owner.items():
        who = f"a dead process ({owner})" if owner is not None else "an unrecorded process"
        lines.append(f"marked {len(runs)} run(s) of {who} KILLED: {runs[0].reason}")
    return lines


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
        for i in range(0, len(items), 1000):  # each batch also refreshes the run's heartbeat (every epoch)
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000], tags=[_beat_tag()])

    def beat(self) -> None:
        """Refresh the run's heartbeat tag."""
        self.client.log_batch(self.run_id, tags=[_beat_tag()])

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

    def set_description(self, text: str) -> None:
        """The run's description in MLflow's UI (markdown; the `mlflow.note.content` tag)."""
        set_run_description(self.client, self.run_id, text)


class Tracker:
    """An experiment in one tracking store; `parent_run()` then `child_run()` per cell."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifact_root = artifact_root
        self._client: Any = None
        self._experiment_id: str | None = None
        self._parent: RunHandle | None = None
        self.heartbeat_interval_s = HEARTBEAT_INTERVAL_S

    @classmethod
    def for_suite(cls, suite_name: str, config_uri: str = "", runs_dir: str | Path = "runs") -> Tracker:
        uri = resolve_tracking_uri(config_uri, runs_dir)
        db = sqlite_path(uri)
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
        db = sqlite_path(self.tracking_uri)
        if db is not None:
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise TrackingError(f"cannot create the tracking store folder {db.parent}: {e}") from None
        try:
            import mlflow.tracking  # noqa: F401 (slow: imported before the lock below)

            with _init_lock(db):  # one process at a time creates (migrates) a fresh sqlite store;
                # MlflowClient() itself may open it, so the client is made inside
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

            self._client = _RetryingClient(MlflowClient(tracking_uri=self.tracking_uri))
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
            dress_experiment(self.client, self._experiment_id)  # dashboards: new and existing experiments
        return self._experiment_id

    # -- runs ----------------------------------------------------------------------------------

    def _create(self, name: str, tags: Mapping[str, Any], parent: RunHandle | None) -> RunHandle:
        all_tags = {"mlflow.runName": name, **{k: str(v) for k, v in tags.items()}, **owner_tags(),
                    HEARTBEAT_TAG: f"{time.time():.3f}"}
        if parent is not None:
            all_tags["mlflow.parentRunId"] = parent.run_id
            all_tags[INVOCATION_TAG] = parent.run_id
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
        # one invocation = this parent and its children; the saved views show the newest one
        handle.set_tags({INVOCATION_TAG: handle.run_id})
        dress_experiment(self.client, self.experiment_id, latest_invocation=handle.run_id)
        self._parent = handle
        try:
            with self._run(handle, params) as h, self._beating(h):  # the beat stops before the run ends
                yield h
        finally:
            self._parent = None

    @contextlib.contextmanager
    def _beating(self, handle: RunHandle) -> Iterator[None]:
        """A background heartbeat every `heartbeat_interval_s` for the block: long stages log nothing."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_interval_s):
                with contextlib.suppress(Exception):  # a missed beat must never break the run
                    handle.beat()

        thread = threading.Thread(target=beat, daemon=True, name="qarm-heartbeat")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)

    @contextlib.contextmanager
    def child_run(self, name: str, params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, Any] | None = None) -> Iterator[RunHandle]:
        if self._parent is None:
            raise RuntimeError("child_run() outside parent_run()")
        parent = self._parent
        parent.beat()
        try:
            with self._run(self._create(name, tags or {}, parent), params) as h:
                yield h
        finally:
            parent.beat()

    # -- runs that ended badly -------------------------------------------------------------------

    def reap_dead_runs(self, timeout_s: float = HEARTBEAT_TIMEOUT_S) -> list[ReapedRun]:
        """Mark the experiment's RUNNING runs whose process is gone KILLED (see runlock.dead_runs for
        the rule; `timeout_s` applies to runs of other hosts). The end time is the last heartbeat."""
        recorded, page = [], None
        while True:
            runs = self.client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'",
                                           max_results=1000, page_token=page)
            for r in runs:
                beat = r.data.tags.get(HEARTBEAT_TAG, "")
                last = float(beat) if _is_number(beat) else r.info.start_time / 1000
                recorded.append(RecordedRun(r.info.run_id, r.data.tags.get("mlflow.runName", r.info.run_id),
                                            _owner_of(r.data.tags), last))
            page = runs.token
            if not page:
                break
        out, me = [], ProcessIdentity.current()
        for r, reason in dead_runs(recorded, timeout_s):
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.client.set_tag(r.run_id, KILLED_REASON_TAG,
                                f"{reason} (owner: {r.owner or 'not recorded'}; marked by {me} at {when})")
            self.client.set_terminated(r.run_id, "KILLED", end_time=int(r.heartbeat * 1000))
            out.append(ReapedRun(r.run_id, r.name, r.owner, reason))
        return out


def _is_number(s: str) -> bool:
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False


@contextlib.contextmanager
def _init_lock(db: Path | None) -> Iterator[None]:
    """flock on `<db>.init-lock` (sqlite stores only): the first process creates the tables, the others wait."""
    if db is None:
        yield
        return
    with open(f"{db}.init-lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _NullRun:
    """The MLflow run of a rank that is not rank 0: accepts every call and logs nothing."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class NullTracker:
    """Ranks other than 0 log nothing: the Tracker interface (check, reap_dead_runs, parent_run, child_run) doing nothing."""

    tracking_uri = ""

    def check(self) -> None:
        return None

    def reap_dead_runs(self) -> list[Any]:
        return []

    @contextlib.contextmanager
    def parent_run(self, name: str, params: Mapping[str, Any] | None = None,
                   tags: Mapping[str, Any] | None = None) -> Iterator[_NullRun]:
        yield _NullRun()

    @contextlib.contextmanager
    def child_run(self, name: str, params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, Any] | None = None) -> Iterator[_NullRun]:
        yield _NullRun()


def tracker_for(suite_name: str, config_uri: str, runs_dir: str | Path, *, is_main: bool) -> Tracker | NullTracker:
    """The suite's tracker on the rank that logs (rank 0, or the one process); a NullTracker on the others, so a
    tracking server (`suite.tracking_uri = "http://HOST:5000"`) hears from one rank only."""
    return Tracker.for_suite(suite_name, config_uri, runs_dir) if is_main else NullTracker()
