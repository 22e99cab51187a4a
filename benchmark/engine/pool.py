"""Training a suite's cells in parallel worker processes (`suite.workers`).

A cell's result depends only on its inputs, its seed and the torch thread count, so cells can train in any
order and in any process: with `suite.workers = W` the suite starts W spawned processes, each with
`suite.threads` torch threads, and hands them the cells whose results are not cached. A worker loads the
replicate's item side from the stage cache (every item-side entry is finished before any cell starts),
trains the cell, seals its `rank` entry and returns the CellRecord; the parent alone talks to MLflow and
replays each returned cell's history into its child run. Results are bit for bit those of one process.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

_SIDES: dict[tuple[str, int], Any] = {}  # per worker: replicate item sides already loaded (ItemSide)


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
    the parent THREAD that started this worker exits: CellPool.submit, which starts workers, runs on the
    suite's main thread). Everywhere: a daemon thread polling os.getppid() every poll_s seconds, which changes
    when the parent dies (the worker is re-parented); it also catches a parent that died before prctl ran."""
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


def train_cell_task(cfg_json: str, cache_root: str, forced: list[str], variant: str, model: str,
                    seed: int) -> dict[str, Any]:
    """Run in a worker: train one cell and return its CellRecord as JSON. forced: the parent's forced stages
    (a forced rank stage retrains even where an entry exists)."""
    import json

    import torch

    from benchmark.config.suite import SuiteConfig
    from benchmark.core.cache import StageCache
    from benchmark.core.configlib import from_mapping
    from benchmark.core.records import to_json
    from benchmark.data.preparation import data_key
    from benchmark.engine.cell import train_or_load
    from benchmark.engine.plan import replicate_seed
    from benchmark.itemside.runner import run_item_side
    from benchmark.itemside.stages import item_side_keys

    cfg = from_mapping(SuiteConfig, json.loads(cfg_json))
    cache = StageCache(Path(cache_root), force=[f for f in forced if f == "rank"])
    rseed = replicate_seed(cfg, seed)
    memo = (cfg_json, rseed)
    if memo not in _SIDES:  # loads what the parent computed: prints nothing
        _SIDES[memo] = run_item_side(cfg, cache, item_side_keys(cfg, data_key(cfg.data), rseed), progress=False)
    record, _ = train_or_load(cfg, cache, _SIDES[memo], variant, model, seed, device=torch.device("cpu"))
    return to_json(record)


class CellPool:
    """W spawned worker processes with `threads` torch threads each; `submit` returns a Future of the JSON
    CellRecord. Use as a context manager. The workers die with this process, even when it is SIGKILLed
    (`_die_with_parent`)."""

    def __init__(self, workers: int, threads: int) -> None:
        import multiprocessing

        from benchmark.core.registry import plugin_modules

        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_init, initargs=(threads, os.getpid(), plugin_modules()))

    def submit(self, cfg_json: str, cache_root: Path, forced: set[str], variant: str, model: str,
               seed: int) -> Future:
        """Train (variant, model, seed) in a worker; the Future holds its CellRecord as JSON."""
        return self.executor.submit(train_cell_task, cfg_json, str(cache_root), sorted(forced), variant, model, seed)

    def __enter__(self) -> CellPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
