"""Leaving the single process: `qarm-bench run CONFIG --nproc-per-node N [--nnodes M --node-rank R ...]`.

    qarm-bench run ... --nproc-per-node N      (this process: checks the config, then `launch`)
      └─ python -m torch.distributed.run --nproc-per-node N ... -m benchmark run ...   (one worker per rank)
           each worker: `worker_main` -> init_world (gloo on CPU, nccl on CUDA) -> the suite, where
             - rank 0 computes every item-side entry but alignment and writes it; the others wait at a barrier
               and load it (`StageCache.load_or_compute`); alignment runs on all ranks together (DDP,
               qarm.alignment.distributed)
             - every cell trains on all ranks (benchmark.cells.train: sharded rankers, one part of each batch per rank,
               predictions gathered exactly); only rank 0 writes cache entries, MLflow runs and the report
             - a rank that raises sets its rank, node (hostname), what it was doing and its message under
               `qarm/error/R` (R: the rank) in the launcher's error store (a TCPStore on node 0, so a rank on another node
               reaches it too); torchrun stops the others, so the cell being trained leaves no `_SUCCESS`, and
               `launch` prints which rank failed, and where.
           before the suite, every worker checks that it sees rank 0's runs/<suite>/ (`check_shared_runs`): the
           other ranks load rank 0's cache entries, so runs/ must be on a filesystem every node shares.

`init_world` returns the rank's benchmark.core.world.World, which the worker hands to the suite (no module
keeps a world). Control messages (barriers, decisions, gathered predictions) travel over a gloo group, also
under nccl, so waiting for rank 0's item side never holds a GPU collective. Nothing here imports torch at
module load: the launcher starts before any worker imports it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Iterator
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmark.core.errors import QarmBenchError
from benchmark.core.world import World

ERROR_STORE_ENV = "QARM_DIST_ERROR_STORE"  # set by `launch`: tcp://HOST:PORT or file:///PATH, where a failing rank
# sets f"{ERROR_KEY}/{rank}" (its rank, node, what it was doing and why)
ERROR_KEY = "qarm/error"
STORE_TIMEOUT = dt.timedelta(seconds=60)
SHARED_CHECK = ".qarm-shared-runs-"  # the token file rank 0 writes into runs/<suite>/ (check_shared_runs)
FAIL_RANK_ENV = "QARM_DIST_FAIL_RANK"  # fault injection for tests: that rank raises at its first cell
CONTROL_TIMEOUT = dt.timedelta(hours=24)  # the other ranks wait this long for rank 0's item side
DIST_FLAGS = ("--nproc-per-node", "--nnodes", "--node-rank", "--master-addr", "--master-port")


class DistributedError(QarmBenchError):
    """A rank of a distributed run failed, or the launch itself did."""


# ---- process groups ------------------------------------------------------------------------------


def init_world(device: Any, *, rank: int | None = None, size: int | None = None, local_rank: int | None = None,
               store: Any = None) -> World:
    """Join the world: the default process group (gloo on CPU, nccl on CUDA; torchrun's env:// rendezvous unless
    a `store` is given, as spawned tests do) plus a gloo group for control messages. Returns the World."""
    import torch
    import torch.distributed as dist

    rank = int(os.environ["RANK"]) if rank is None else rank
    size = int(os.environ["WORLD_SIZE"]) if size is None else size
    local_rank = int(os.environ.get("LOCAL_RANK", rank)) if local_rank is None else local_rank
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    kwargs: dict[str, Any] = {"store": store} if store is not None else {"init_method": "env://"}
    dist.init_process_group(backend, rank=rank, world_size=size, timeout=CONTROL_TIMEOUT if backend == "gloo"
                            else None, **kwargs)
    control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT) if backend != "gloo" else None
    return World(rank, size, local_rank, control)


def shutdown() -> None:
    """Leave the world (destroy the process groups)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def check_fault_injection(world: World, where: str) -> None:
    """Tests: the rank named by QARM_DIST_FAIL_RANK raises here (a failing rank mid-run)."""
    if world.active and os.environ.get(FAIL_RANK_ENV) == str(world.rank):
        raise RuntimeError(f"injected failure ({FAIL_RANK_ENV}={world.rank}) at {where}")


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
        world.barrier()  # every rank done with the group before any tears it down (not after a failure: the
        # other ranks may never reach it; the failing rank's exit makes the parent stop them)
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
    return ERROR_STORE_ENV in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


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
    error store."""
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


def error_store(spec: str, *, host: bool = False) -> Any:
    """The error store `spec` names: "tcp://HOST:PORT" (a TCPStore; `host`: this process serves it) or
    "file:///PATH" (a FileStore, for tests and one-machine runs)."""
    import torch.distributed as dist

    if spec.startswith("file://"):
        return dist.FileStore(spec[len("file://"):], -1)
    if not spec.startswith("tcp://"):
        raise DistributedError(f"{ERROR_STORE_ENV}={spec!r}: expected tcp://HOST:PORT or file:///PATH")
    addr, _, port = spec[len("tcp://"):].rpartition(":")
    return dist.TCPStore(addr, int(port), is_master=host, wait_for_workers=False, timeout=STORE_TIMEOUT)


@contextlib.contextmanager
def launcher_store(args: Any) -> Iterator[tuple[Any, str]]:
    """(store, spec) for this launch's ranks' failure reports. One node: a TCPStore served here on a free port.
    Several: node 0 serves it on --master-port + 1 and every node's ranks connect there, so a rank on any node
    reports to node 0's launcher."""
    if args.nnodes == 1:
        store = error_store("tcp://127.0.0.1:0", host=True)
        yield store, f"tcp://127.0.0.1:{store.port}"
        return
    spec = f"tcp://{args.master_addr}:{(args.master_port or 29500) + 1}"
    yield (error_store(spec, host=True) if args.node_rank == 0 else None), spec


def read_failures(store: Any, world_size: int) -> list[dict[str, Any]]:
    """The failure reports ranks 0..world_size-1 set in `store`, earliest first (the first is the cause; the
    others mostly fail on its closed connections after it)."""
    keys = [f"{ERROR_KEY}/{r}" for r in range(world_size)]
    found = [json.loads(store.get(k)) for k in keys if store.check([k])]
    return sorted(found, key=lambda f: (f["time_ns"], f["rank"]))


def failure_line(failures: list[dict[str, Any]]) -> str:
    """The launcher's one line about a failed run: the first failing rank, its node, what it was doing, why."""
    first = failures[0]
    others = f" ({len(failures) - 1} other rank(s) failed too)" if len(failures) > 1 else ""
    return (f"the distributed run failed: rank {first['rank']} on node {first['host']} ({first['where']}): "
            f"{first['kind']}: {first['message']}{others}")


def launch(argv: Sequence[str], args: Any) -> int:
    """Run this command under torchrun and wait; on failure name the rank that failed, its node and why."""
    world_size = args.nproc_per_node * args.nnodes
    with launcher_store(args) as (store, spec):
        env = {**os.environ, ERROR_STORE_ENV: spec}
        try:
            rc = subprocess.run(launch_command(argv, args), env=env, check=False).returncode
        except KeyboardInterrupt:
            return 130
        if rc == 0:
            return 0
        try:
            failures = read_failures(store if store is not None else error_store(spec), world_size)
        except (RuntimeError, OSError) as e:  # node 0's store is gone (its launcher exited first)
            raise DistributedError(f"torchrun exited with status {rc}; the ranks' reports on node 0 ({spec}) "
                                   f"could not be read ({e}): see node 0's output") from None
        if not failures:
            raise DistributedError(f"torchrun exited with status {rc} and no rank reported why (see its output "
                                   "above)")
        print(f"qarm-bench: error: {failure_line(failures)}; the cell being trained wrote no result (finished "
              "stages and cells are kept: rerun to resume)", file=sys.stderr)
        return 2 if all(f["kind"] == "user error" for f in failures) else 1


def check_shared_runs(world: World, folder: Path) -> None:
    """Every rank sees rank 0's `folder` (runs/<suite>/): rank 0 writes a token file there, the others read it
    through their filesystem after a barrier. A rank that does not find it stops every rank with the path: the
    other ranks load rank 0's cache entries from there."""
    if not world.active:
        return
    token = world.agree(uuid.uuid4().hex if world.is_main else None)
    path = Path(folder) / f"{SHARED_CHECK}{token}"
    if world.is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(token)
    world.barrier()
    seen = path.is_file() and path.read_text() == token
    report = world.gather_objects((world.rank, socket.gethostname(), seen, str(path)))
    world.barrier()
    if world.is_main:
        path.unlink(missing_ok=True)
    blind = [(r, h, p) for r, h, ok, p in report if not ok]
    if blind:
        who = ", ".join(f"rank {r} on {h} (looked at {p})" for r, h, p in blind)
        raise DistributedError(f"{report[0][3]}: rank 0 on {report[0][1]} wrote this file, but {who} cannot read it: "
                               "runs/ must be on a shared filesystem for every node (suite.runs_dir)")


def worker_main(device_name: str, body: Callable[[World, Any], int], suite_dir: Path | None = None) -> int:
    """A torchrun worker: resolve `suite.device` for this rank, join the world on it, check that every rank sees
    `suite_dir` (rank 0's runs/<suite>/), run `body(world, device)` and leave. An exception is reported to the
    launcher's error store (rank, node, where, message) and re-raised for the CLI to report."""
    from benchmark.core.device import resolve_device

    world = World()
    try:
        device = resolve_device(device_name)
        world = init_world(device)
        if suite_dir is not None:
            check_shared_runs(world, suite_dir)
        return body(world, device)
    except BaseException as e:  # noqa: BLE001 - recorded, then re-raised
        record_failure(world, e)
        raise
    finally:
        shutdown()


def failure_report(world: World, e: BaseException) -> dict[str, Any]:
    """What a failing rank tells the launcher: rank, node (hostname), what it was doing, the kind of error
    ("user error" for a QarmBenchError) and its message (one line; the last frame for other errors)."""
    rank = int(os.environ.get("RANK", world.rank))
    kind = "user error" if isinstance(e, QarmBenchError) else type(e).__name__
    last = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    at = f" [{Path(last[0].filename).name}:{last[0].lineno}]" if last and kind != "user error" else ""
    return {"rank": rank, "host": socket.gethostname(), "where": world.where, "kind": kind,
            "message": f"{e}{at}".replace("\n", " "), "time_ns": time.time_ns()}


def record_failure(world: World, e: BaseException, store: Any = None) -> None:
    """Set this rank's failure report under qarm/error/R (R: its rank) in the launcher's error store (`store`, else the
    one ERROR_STORE_ENV names; nothing outside a launched run). A report that cannot be sent is said on stderr."""
    spec = os.environ.get(ERROR_STORE_ENV)
    if store is None and not spec:
        return
    report = failure_report(world, e)
    try:
        (store if store is not None else error_store(str(spec))).set(f"{ERROR_KEY}/{report['rank']}",
                                                                     json.dumps(report))
    except (RuntimeError, OSError) as why:
        print(f"qarm-bench: rank {report['rank']} could not report its failure to {spec} ({why})", file=sys.stderr)
