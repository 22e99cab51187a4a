"""Training a suite's cells in parallel worker processes (`suite.workers`), each cell as soon as it can start.

A cell's result depends only on its inputs, its seed and the torch thread count, so cells can train in any
order and in any process: with `suite.workers = W` the suite starts W spawned processes, each with
`suite.threads` torch threads, as its item side begins, and a CellScheduler hands them the cells whose results are
not cached, each once the item-side entries it reads (its plan's `reads`) are sealed in the stage cache: an
ID-only cell trains while the encoders and alignment still run. While the suite's own process computes the item
side, at most W - 1 cells train (its `threads` threads take one worker's place, so threads never outnumber
W x `threads`); then W. Among the cells ready, the costliest go first (engine.plan.cell_cost: the tail of the
run is then a short cell). A worker loads the entries its cell reads from the stage cache, trains the cell, seals its `rank` entry
and returns the CellRecord; the parent alone talks to MLflow and replays each returned cell's history into its
child run. Results are bit for bit those of one process (tests/benchmark/test_workers.py).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_ENTRIES: dict[tuple[str, str, str], Any] = {}  # per worker: item-side artifacts already loaded, by (root, stage, key)


def _init(threads: int, parent: int, plugins: tuple[str, ...] = ()) -> None:
    _die_with_parent(parent)
    import torch

    from benchmark.core.registry import import_plugins

    torch.set_num_threads(threads)
    import_plugins(plugins)  # what the parent registered by decorator (entry points need nothing)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """Make this worker exit when process `parent` (its creator's pid, recorded there) dies, even by SIGKILL,
    which runs no cleanup: without this a killed suite leaves its workers running under init (parent 1).

    Linux: prctl(PR_SET_PDEATHSIG, SIGKILL), delivered by the kernel the moment the parent goes (strictly, when
    the parent THREAD that started this worker exits: CellPool.warm starts them all from the suite's main
    thread, and CellScheduler's thread, which submits the cells, outlives the pool). Everywhere: a daemon
    thread polling os.getppid() every poll_s seconds, which changes when the parent dies (the worker is re-parented); it also catches a parent that died before prctl ran."""
    import signal
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        import ctypes

        # should it fail (it does not on Linux >= 2.1.57), the polling thread below still ends the worker
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)  # no cleanup: the results have nowhere to go

    threading.Thread(target=watch, daemon=True, name="qarm-parent-watch").start()


def train_cell_task(cfg_json: str, cache_root: str, forced: list[str], keys: Any, variant: str, model: str,
                    seed: int) -> dict[str, Any]:
    """Run in a worker: train one cell and return its CellRecord as JSON. keys: the ItemSideKeys of the cell's
    replicate; forced: the parent's forced stages (a forced rank stage retrains even where an entry exists)."""
    import json

    import torch

    from benchmark.cells.plan import plan_cell
    from benchmark.config.suite import SuiteConfig
    from benchmark.core.cache import StageCache
    from benchmark.core.configlib import from_mapping
    from benchmark.core.records import to_json
    from benchmark.engine.cell import train_or_load
    from benchmark.itemside.runner import load_entries

    cfg = from_mapping(SuiteConfig, json.loads(cfg_json))
    cache = StageCache(Path(cache_root), force=[f for f in forced if f == "rank"])
    side = load_entries(cache, keys, plan_cell(cfg, variant, model, seed, keys).reads, memo=_ENTRIES)
    record, _ = train_or_load(cfg, cache, side, variant, model, seed, device=torch.device("cpu"))
    return to_json(record)


def _warm() -> int:
    """A worker's first task (CellPool.warm): import what every cell needs while the parent still computes the
    item side. An import error here is left to the cell that needs the module, which reports it."""
    import benchmark.cells.inputs  # noqa: F401
    import benchmark.cells.train  # noqa: F401
    import benchmark.engine.cell  # noqa: F401

    return os.getpid()


class CellPool:
    """W spawned worker processes with `threads` torch threads each; `submit` returns a Future of the JSON
    CellRecord. Use as a context manager. The workers die with this process, even when it is SIGKILLed
    (`_die_with_parent`)."""

    def __init__(self, workers: int, threads: int) -> None:
        import multiprocessing

        from benchmark.core.registry import plugin_modules

        self.workers = workers
        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_init, initargs=(threads, os.getpid(), plugin_modules()))

    def warm(self) -> None:
        """Start every worker now, from the calling thread (the suite's main thread), without waiting for them:
        they import torch and the training code (`_warm`) while the caller goes on. The executor starts a
        process per submitted task while none is idle, and none is before its first task returns."""
        for _ in range(self.workers):
            self.executor.submit(_warm)

    def submit(self, cfg_json: str, cache_root: Path, forced: set[str], keys: Any, variant: str, model: str,
               seed: int) -> Future:
        """Train (variant, model, seed) of the replicate whose ItemSideKeys are `keys` in a worker; the Future
        holds its CellRecord as JSON."""
        return self.executor.submit(train_cell_task, cfg_json, str(cache_root), sorted(forced), keys, variant, model,
                                    seed)

    def __enter__(self) -> CellPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


@dataclass(eq=False)
class _Cell:
    name: Hashable
    needs: frozenset[tuple[str, str]]  # (stage, key) of every item-side entry it reads
    args: tuple[Any, ...]  # CellPool.submit's
    cost: float  # expected seconds: the higher go first
    order: int
    result: Future = field(default_factory=Future)
    submitted: bool = False  # handed to the pool


class CellScheduler:
    """Feeds a CellPool: `add` a cell with the item-side entries it reads, report each entry with `sealed` as the
    item side seals it, then `item_side_done`; `result(name)` waits for a cell's JSON CellRecord (or raises its
    error), `future(name)` is its Future. A cell goes to the workers once all its entries are sealed; at most
    W - 1 cells are in the workers until `item_side_done` (the caller computes the item side with the threads of one worker), W after it;
    ready cells go highest `cost` first, then in the order added. `item_side_done` also releases any cell still
    waiting (its worker then reports an entry that is not there rather than the run waiting for ever).

    Cells are submitted by a thread of the scheduler's own, which outlives the workers: on Linux a worker is
    killed when the thread that started it ends (`_die_with_parent`), and the pool's workers are all started
    by CellPool.warm in the caller's thread. A context manager: leaving it stops submitting, shuts the pool
    down (cancelling what has not started) and ends the thread."""

    def __init__(self, pool: CellPool) -> None:
        self.pool = pool
        self._cond = threading.Condition()
        self._cells: dict[Hashable, _Cell] = {}
        self._waiting: list[_Cell] = []
        self._ready: list[_Cell] = []
        self._sealed: set[tuple[str, str]] = set()
        self._running = 0
        self._cap = max(1, pool.workers - 1)
        self._closed = False
        self._pool_down = threading.Event()
        pool.warm()
        self._thread = threading.Thread(target=self._pump, name="qarm-cell-scheduler", daemon=True)
        self._thread.start()

    def add(self, name: Hashable, needs: Iterable[tuple[str, str]], args: tuple[Any, ...], cost: float = 0.0) -> None:
        with self._cond:
            if name in self._cells:
                raise ValueError(f"cell {name!r} added twice")
            cell = _Cell(name, frozenset(needs), args, cost, len(self._cells))
            self._cells[name] = cell
            self._waiting.append(cell)
            self._release()

    def sealed(self, stage: str, key: str) -> None:
        """The entry (stage, key) is sealed in the stage cache: the cells that only waited for it may start."""
        with self._cond:
            self._sealed.add((stage, key))
            self._release()

    def item_side_done(self) -> None:
        """The caller is done with the item side: every worker may train, and every cell is released."""
        with self._cond:
            self._cap = self.pool.workers
            self._release(everything=True)

    def names(self) -> set[Hashable]:
        """Every cell added."""
        with self._cond:
            return set(self._cells)

    def future(self, name: Hashable) -> Future:
        """The Future of a cell's JSON CellRecord (done when its worker returns it)."""
        return self._cells[name].result

    def result(self, name: Hashable) -> Any:
        return self._cells[name].result.result()

    def _release(self, everything: bool = False) -> None:  # holding self._cond
        ready = [c for c in self._waiting if everything or c.needs <= self._sealed]
        if ready:
            self._waiting = [c for c in self._waiting if c not in ready]
            self._ready = sorted(self._ready + ready, key=lambda c: (-c.cost, c.order))
        self._cond.notify_all()

    def _pump(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not (self._ready and self._running < self._cap):
                    self._cond.wait()
                if self._closed:
                    break
                cell = self._ready.pop(0)
                self._running += 1
                cell.submitted = True
            try:
                fut = self.pool.submit(*cell.args)
            except BaseException as e:  # a broken or shut-down pool: the cell reports it
                self._finish(cell, None, e)
                continue
            fut.add_done_callback(lambda f, c=cell: self._finish(c, f, None))
        self._pool_down.wait()  # outlive the workers (see the class docstring)

    def _finish(self, cell: _Cell, fut: Future | None, error: BaseException | None) -> None:
        """Pass the pool's Future `fut` of `cell` on to the cell's own, or `error` when it could not be submitted."""
        if fut is None:
            cell.result.set_exception(error or RuntimeError("cell not submitted"))
        elif fut.cancelled():
            cell.result.cancel()
        elif fut.exception() is not None:
            cell.result.set_exception(fut.exception())
        else:
            cell.result.set_result(fut.result())
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def __enter__(self) -> CellScheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop submitting; unstarted cells are cancelled. After an error the pool is shut down before this
        returns (running cells finish first); otherwise (every cell is in) in the background, so the workers'
        exit overlaps with what the caller does next."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for cell in self._cells.values():  # never submitted: whoever waits on it is told
            if not cell.submitted:
                cell.result.cancel()

        def down() -> None:
            try:
                self.pool.__exit__(*exc)
            finally:
                self._pool_down.set()  # the scheduler's thread may end now (see the class docstring)

        if exc and exc[0] is not None:
            down()
            self._thread.join()
        else:
            threading.Thread(target=down, name="qarm-pool-shutdown", daemon=True).start()
