"""Leaving the single process: `qarm-bench run CONFIG --nproc-per-node N [--nnodes M --node-rank R ...]`.

    qarm-bench run ... --nproc-per-node N      (this process: checks the config, then `launch`)
      └─ python -m torch.distributed.run --nproc-per-node N ... -m benchmark run ...   (one worker per rank)
           each worker: `worker_main` -> init_world (gloo on CPU, nccl on CUDA) -> the suite, where
             - rank 0 computes every item-side entry but alignment and writes it; the others wait at a barrier
               and load it (`run_entry`); alignment runs on all ranks together (DDP, qarm.alignment.distributed)
             - every cell trains on all ranks (benchmark.cells.train: sharded rankers, one part of each batch per rank,
               predictions gathered exactly); only rank 0 writes cache entries, MLflow runs and the report
             - a rank that raises writes its rank and message to the launcher's error folder; torchrun stops the
               others, so the cell being trained leaves no `_SUCCESS`, and `launch` prints which rank failed.

Control messages (barriers, decisions, gathered predictions) travel over a gloo group, also under nccl, so
waiting for rank 0's item side never holds a GPU collective. Nothing here imports torch at module load: the
launcher starts before any worker imports it.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.core.errors import QarmBenchError

if TYPE_CHECKING:
    import numpy as np

ERROR_DIR_ENV = "QARM_DIST_ERROR_DIR"  # set by `launch`: where a failing rank leaves its message
FAIL_RANK_ENV = "QARM_DIST_FAIL_RANK"  # fault injection for tests: that rank raises at its first cell
CONTROL_TIMEOUT = dt.timedelta(hours=24)  # the other ranks wait this long for rank 0's item side
DIST_FLAGS = ("--nproc-per-node", "--nnodes", "--node-rank", "--master-addr", "--master-port")


class DistributedError(QarmBenchError):
    """A rank of a distributed run failed, or the launch itself did."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks: rank (global), size (ranks in all), local_rank (on this node)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = World()
_world = SINGLE
_control: Any = None  # the gloo group of control messages (None: the default group is gloo)


def current() -> World:
    """The World of this process: SINGLE unless `init_world` ran."""
    return _world


def active() -> bool:
    """Whether this process is one rank of a world of several."""
    return _world.size > 1


def is_main() -> bool:
    return _world.is_main


# ---- process groups ------------------------------------------------------------------------------


def init_world(device: Any, *, rank: int | None = None, size: int | None = None, local_rank: int | None = None,
               store: Any = None) -> World:
    """Join the world: the default process group (gloo on CPU, nccl on CUDA; torchrun's env:// rendezvous unless
    a `store` is given, as spawned tests do) plus a gloo group for control messages. Returns the World."""
    import torch
    import torch.distributed as dist

    global _world, _control
    rank = int(os.environ["RANK"]) if rank is None else rank
    size = int(os.environ["WORLD_SIZE"]) if size is None else size
    local_rank = int(os.environ.get("LOCAL_RANK", rank)) if local_rank is None else local_rank
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    kwargs: dict[str, Any] = {"store": store} if store is not None else {"init_method": "env://"}
    dist.init_process_group(backend, rank=rank, world_size=size, timeout=CONTROL_TIMEOUT if backend == "gloo"
                            else None, **kwargs)
    _control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT) if backend != "gloo" else None
    _world = World(rank, size, local_rank)
    return _world


def shutdown() -> None:
    """Leave the world (destroy the process groups); this process is SINGLE again."""
    import torch.distributed as dist

    global _world, _control
    if dist.is_initialized():
        dist.destroy_process_group()
    _world, _control = SINGLE, None


def barrier() -> None:
    """Every rank waits here for all the others (no-op in a single process)."""
    if active():
        import torch.distributed as dist

        dist.barrier(group=_control)


def agree(value: Any) -> Any:
    """Rank 0's `value` on every rank (a decision all ranks must share, e.g. "this entry is cached")."""
    if not active():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if not active():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * _world.size
    dist.all_gather_object(out, obj, group=_control)
    return out


def gather_rows(rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """This rank's values (n_r,) of rows (n_r,) int64 -> every rank's, in row order, (n,), on every rank:
    exactly what one process would hold (benchmark.cells.metrics.reassemble_rows checks each row comes once)."""
    import numpy as np

    from benchmark.cells.metrics import reassemble_rows

    return reassemble_rows(gather_objects((np.asarray(rows), np.asarray(values))), n)


# ---- the suite's hooks ---------------------------------------------------------------------------

COLLECTIVE_STAGES = frozenset({"align"})  # computed by every rank together; the rest by rank 0 alone


def run_entry(cfg: Any, cache: Any, seed: int, stage: Any, inst: str, key: str, done: dict[str, Any],
              progress: bool) -> tuple[Any, bool]:
    """One item-side entry in a world of several ranks (benchmark.itemside.stages._run_entry's twin, which calls it):
    (artifact, cached).

    Cached (as rank 0 sees it): every rank loads it. Otherwise alignment (COLLECTIVE_STAGES) is computed by all
    ranks together, rank 0 writing the entry and the others computing in a scratch folder; any other stage is
    computed and written by rank 0 while the others wait at a barrier, then load it.
    """
    from benchmark.itemside.compute import StageContext

    final = cache.path(stage.name, key)
    if agree(cache.done(stage.name, key) if is_main() else None):
        return stage.load(final), True
    inputs = {u: done[u] for u in stage.upstream if u in done}

    def compute(workdir: Path) -> Any:
        set_where(f"stage {stage.name}{'/' + inst if inst else ''}")
        ctx = StageContext(cfg, seed, inputs, workdir, final, progress)
        return stage.compute(ctx, inst) if inst else stage.compute(ctx)

    artifact = None
    if is_main():
        with cache.writing(stage.name, key, {"instance": inst, "seed": seed if stage.seeded else None}) as tmp:
            artifact = compute(tmp)
            stage.save(artifact, tmp)
    elif stage.name in COLLECTIVE_STAGES:
        with tempfile.TemporaryDirectory(prefix=f"qarm-{stage.name}-rank{_world.rank}-") as tmp:
            artifact = compute(Path(tmp))
    barrier()
    return (artifact if artifact is not None else stage.load(final)), False


def cell_cached(cache: Any, key: str) -> bool:
    """Whether a rank cell is cached, as rank 0 sees it (every rank must train it, or none)."""
    return bool(agree(cache.done("rank", key) if is_main() else None))


def check_fault_injection(where: str) -> None:
    """Tests: the rank named by QARM_DIST_FAIL_RANK raises here (a failing rank mid-run)."""
    if active() and os.environ.get(FAIL_RANK_ENV) == str(_world.rank):
        raise RuntimeError(f"injected failure ({FAIL_RANK_ENV}={_world.rank}) at {where}")


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

    @contextmanager
    def parent_run(self, name: str, params: Mapping[str, Any] | None = None,
                   tags: Mapping[str, Any] | None = None) -> Iterator[_NullRun]:
        yield _NullRun()

    @contextmanager
    def child_run(self, name: str, params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, Any] | None = None) -> Iterator[_NullRun]:
        yield _NullRun()


# ---- spawned worlds (tests, perf) -----------------------------------------------------------------


def spawn(fn: Callable[..., Any], nprocs: int, *args: Any) -> None:
    """Run fn(world, *args) on `nprocs` fresh CPU processes joined in one gloo world (a FileStore in a temporary
    folder: no port). fn must be importable (module level). Raises if any process fails."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="qarm-spawn-") as tmp:
        mp.spawn(_spawned, args=(nprocs, str(Path(tmp) / "store"), fn, args), nprocs=nprocs, join=True)


def _spawned(rank: int, nprocs: int, store_path: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    world = init_world(torch.device("cpu"), rank=rank, size=nprocs, local_rank=rank,
                       store=dist.FileStore(store_path, nprocs))
    try:
        fn(world, *args)
    finally:
        shutdown()


def call_file(world: World, path: str, name: str, *args: Any) -> Any:
    """fn(world, *args) for fn = `name` of the Python file `path` (test workers that are not importable)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_qarm_worker_{Path(path).stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)(world, *args)


# ---- launching -----------------------------------------------------------------------------------


def add_launch_arguments(p: Any) -> None:
    """The torchrun flags of `qarm-bench run` (and `perf rank`)."""
    p.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                   help="ranks on this machine, under torchrun: gloo on CPU, nccl on CUDA (default 1: no launch)")
    p.add_argument("--nnodes", type=int, default=1, metavar="M", help="machines in the run (default 1)")
    p.add_argument("--node-rank", type=int, default=0, metavar="R", help="this machine's index, 0..M-1")
    p.add_argument("--master-addr", default="127.0.0.1", metavar="A", help="address of node 0 (default 127.0.0.1)")
    p.add_argument("--master-port", type=int, default=None, metavar="P",
                   help="port on node 0 (default: a free one when --nnodes 1, else 29500)")


def wants_launch(args: Any) -> bool:
    """Whether this invocation must start a torchrun world (and is not already one of its workers)."""
    n = getattr(args, "nproc_per_node", 1) * getattr(args, "nnodes", 1)
    if n < 1 or getattr(args, "nproc_per_node", 1) < 1:
        raise DistributedError("--nproc-per-node and --nnodes must be >= 1")
    return n > 1 and not in_worker()


def in_worker() -> bool:
    """Whether this process is a worker that `launch` started."""
    return ERROR_DIR_ENV in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def strip_launch_flags(argv: Sequence[str]) -> list[str]:
    """argv without the launch flags (and their values), to hand to each worker."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in DIST_FLAGS:
            skip = True
        elif not a.startswith(tuple(f"{f}=" for f in DIST_FLAGS)):
            out.append(a)
    return out


def launch_command(argv: Sequence[str], args: Any) -> list[str]:
    """`python -m torch.distributed.run <options> -m benchmark <argv without launch flags> --set rank.sharded=true`.
    Only local rank 0's output reaches the console (each node's); a failing rank's message comes back through the
    error folder."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(args.nproc_per_node),
           "--local-ranks-filter", "0"]
    if args.nnodes == 1 and args.master_port is None:
        cmd += ["--standalone"]  # a rendezvous on a free local port: concurrent runs never collide
    else:
        cmd += ["--nnodes", str(args.nnodes), "--node-rank", str(args.node_rank), "--master-addr",
                args.master_addr, "--master-port", str(args.master_port or 29500)]
    # Every ranker is sharded on several ranks; saying so in the workers' config keeps the record true and gives
    # their cells the keys of a 1-process sharded run (the same computation, up to float summation order).
    return [*cmd, "-m", "benchmark", *strip_launch_flags(argv), "--set", "rank.sharded=true"]


def launch(argv: Sequence[str], args: Any) -> int:
    """Run this command under torchrun and wait; on failure name the rank that failed and why."""
    with tempfile.TemporaryDirectory(prefix="qarm-dist-") as errors:
        env = {**os.environ, ERROR_DIR_ENV: errors}
        try:
            rc = subprocess.run(launch_command(argv, args), env=env, check=False).returncode
        except KeyboardInterrupt:
            return 130
        if rc == 0:
            return 0
        # the first rank to fail is the cause; the others mostly fail on its closed connections after it
        reports = sorted(Path(errors).glob("rank*.txt"), key=lambda p: (p.stat().st_mtime_ns, int(p.stem[4:])))
        if not reports:
            raise DistributedError(f"torchrun exited with status {rc} and no rank reported why (see its output "
                                   "above)")
        first = reports[0].read_text().strip()
        others = f" ({len(reports) - 1} other rank(s) failed too)" if len(reports) > 1 else ""
        print(f"qarm-bench: error: the distributed run failed: {first}{others}; the cell being trained wrote no "
              "result (finished stages and cells are kept: rerun to resume)", file=sys.stderr)
        return 2 if all("user error" in p.read_text() for p in reports) else 1


def worker_main(device_name: str, body: Callable[[], int]) -> int:
    """A torchrun worker: join the world on `suite.device`, run `body`, and leave. An exception is recorded in
    the launcher's error folder (rank, where, message) and re-raised for the CLI to report."""
    from benchmark.core.device import resolve_device

    world = SINGLE
    try:
        world = init_world(resolve_device(device_name))
        return body()
    except BaseException as e:  # noqa: BLE001 - recorded, then re-raised
        _record_failure(world, e)
        raise
    finally:
        shutdown()


_where = "the item side"


def set_where(what: str) -> None:
    """What this rank is doing now (named in its failure message): a stage, or a cell "dlrm/id_only/seed0"."""
    global _where
    _where = what


def _record_failure(world: World, e: BaseException) -> None:
    folder = os.environ.get(ERROR_DIR_ENV)
    if not folder:
        return
    rank = int(os.environ.get("RANK", world.rank))
    kind = "user error" if isinstance(e, QarmBenchError) else type(e).__name__
    last = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    at = f" [{Path(last[0].filename).name}:{last[0].lineno}]" if last and kind != "user error" else ""
    msg = f"rank {rank} ({_where}): {kind}: {e}{at}"
    (Path(folder) / f"rank{rank}.txt").write_text(msg.replace("\n", " ") + "\n")
