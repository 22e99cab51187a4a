"""The cell scheduler (benchmark.engine.pool.CellScheduler): a cell goes to the workers only once every item-side
entry it reads is sealed, never more than W - 1 at once while the suite computes the item side, W after, the
costliest ready cell first; a worker's error reaches the caller. And a worker's partial item side
(benchmark.itemside.runner.load_entries) holds what the cell reads and nothing else."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError, Future
from pathlib import Path
from typing import Any

import pytest

from benchmark.cells.plan import plan_cell
from benchmark.config.suite import load_config
from benchmark.core.cache import StageCache
from benchmark.engine.pool import CellScheduler
from benchmark.itemside.runner import load_entries, run_item_side
from benchmark.itemside.stages import item_side_keys


class FakePool:
    """What CellScheduler needs of a CellPool; each submitted cell's Future is completed by the test."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.warmed = False
        self.shut = False
        self.lock = threading.Lock()
        self.futures: dict[str, Future] = {}
        self.order: list[str] = []

    def warm(self) -> None:
        self.warmed = True

    def submit(self, name: str) -> Future:
        with self.lock:
            fut: Future = Future()
            self.futures[name] = fut
            self.order.append(name)
            return fut

    def __exit__(self, *exc: object) -> None:
        self.shut = True

    def running(self) -> list[str]:
        with self.lock:
            return [n for n, f in self.futures.items() if not f.done()]


def _wait(cond: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for the scheduler")
        time.sleep(0.005)


def _settle() -> None:
    time.sleep(0.05)  # give the scheduler's thread the chance to submit what it (wrongly) would


def test_cells_start_when_their_entries_are_sealed_within_the_cap_costliest_first() -> None:
    pool = FakePool(workers=3)
    with CellScheduler(pool) as sched:
        assert pool.warmed
        sched.add("a", [("data", "d")], ("a",), cost=1.0)
        sched.add("b", [("data", "d"), ("codes", "k1")], ("b",), cost=1.0)
        sched.add("c", [("data", "d"), ("codes", "k1")], ("c",), cost=5.0)
        sched.add("d", [("data", "d"), ("align", "x")], ("d",), cost=9.0)
        _settle()
        assert pool.order == []  # nothing sealed yet
        sched.sealed("data", "d")
        _wait(lambda: pool.order == ["a"])
        sched.sealed("codes", "k1")  # b and c are ready; the cap is W - 1 = 2 while the item side runs
        _wait(lambda: pool.order == ["a", "c"])  # c (cost 5) before b (cost 1)
        _settle()
        assert pool.order == ["a", "c"]
        pool.futures["a"].set_result({"cell": "a"})
        _wait(lambda: pool.order == ["a", "c", "b"])
        _settle()
        assert "d" not in pool.order  # align/x is not sealed
        sched.item_side_done()  # cap W = 3, and d is released (its entry would be reported missing by the worker)
        _wait(lambda: pool.order == ["a", "c", "b", "d"])
        assert sorted(pool.running()) == ["b", "c", "d"]
        for name in ("b", "c", "d"):
            pool.futures[name].set_result({"cell": name})
        assert [sched.result(n) for n in "abcd"] == [{"cell": n} for n in "abcd"]
        assert sched.future("c").result() == {"cell": "c"}
    _wait(lambda: pool.shut)


def test_the_cap_holds_with_many_ready_cells_and_lifts_after_the_item_side() -> None:
    pool = FakePool(workers=2)
    with CellScheduler(pool) as sched:
        for i in range(6):
            sched.add(i, [("data", "d")], (f"c{i}",))
        sched.sealed("data", "d")
        _wait(lambda: len(pool.order) == 1)
        _settle()
        assert pool.running() == ["c0"]  # W - 1 = 1 at once
        pool.futures["c0"].set_result(0)
        _wait(lambda: pool.running() == ["c1"])
        sched.item_side_done()
        _wait(lambda: sorted(pool.running()) == ["c1", "c2"])
        _settle()
        assert len(pool.running()) == 2
        for i in range(1, 6):
            _wait(lambda i=i: f"c{i}" in pool.futures)
            pool.futures[f"c{i}"].set_result(i)
        assert [sched.result(i) for i in range(6)] == list(range(6))
        assert pool.order == [f"c{i}" for i in range(6)]  # equal costs: the order added


def test_a_worker_error_reaches_the_caller_and_unstarted_cells_are_cancelled() -> None:
    pool = FakePool(workers=2)
    sched = CellScheduler(pool)
    with sched:
        sched.add("bad", [("data", "d")], ("bad",))
        sched.add("never", [("align", "x")], ("never",))
        sched.sealed("data", "d")
        _wait(lambda: "bad" in pool.futures)
        pool.futures["bad"].set_exception(ValueError("cell failed in the worker"))
        with pytest.raises(ValueError, match="cell failed in the worker"):
            sched.result("bad")
    _wait(lambda: pool.shut and not sched._thread.is_alive())  # shut down in the background, the thread ended
    with pytest.raises(CancelledError):  # the run left before it started
        sched.result("never")


def test_leaving_on_an_error_shuts_the_pool_down_before_the_error_goes_on() -> None:
    pool = FakePool(workers=2)
    sched = CellScheduler(pool)
    with pytest.raises(KeyError), sched:
        sched.add("a", [("data", "d")], ("a",))
        raise KeyError("the item side failed")
    assert pool.shut and not sched._thread.is_alive()  # already, not in the background
    with pytest.raises(CancelledError):
        sched.result("a")


def test_a_cell_added_twice_is_refused() -> None:
    with CellScheduler(FakePool(workers=2)) as sched:
        sched.add("a", [], ("a",))
        with pytest.raises(ValueError, match="added twice"):
            sched.add("a", [], ("a",))


def test_a_worker_loads_only_the_entries_its_cell_reads(tmp_path: Path) -> None:
    from benchmark.data.preparation import data_key

    cfg = load_config("synthetic-tiny", [f"suite.runs_dir={tmp_path}"])
    cache = StageCache(tmp_path / "artifacts")
    keys = item_side_keys(cfg, data_key(cfg.data), 0)
    with pytest.raises(RuntimeError, match="not finished"):  # nothing computed yet: a clear error, no compute
        load_entries(cache, keys, [("data", "")])
    sealed: list[tuple[str, str]] = []
    full = run_item_side(cfg, cache, keys, progress=False, on_entry=lambda st, inst: sealed.append((st, inst)))
    assert sealed[0] == ("data", "") and len(sealed) == len(set(sealed)) == 4 + len(full.codes)
    for variant, model in (("id_only", "dlrm"), ("aligned_dense", "dlrm"), ("aligned_codes", "sim"),
                           ("frozen_dense", "din")):
        plan = plan_cell(cfg, variant, model, 0, keys)
        assert set(plan.reads) <= set(sealed)
        memo: dict[tuple[str, str, str], Any] = {}
        side = load_entries(cache, keys, plan.reads, memo)
        assert side.pairs is None
        assert (side.align is not None) == (("align", "") in plan.reads)
        assert (side.frozen is not None) == (("frozen", "") in plan.reads)
        assert set(side.codes) == {inst for st, inst in plan.reads if st == "codes"}
        assert side.data.train.equals(full.data.train)
        if side.align is not None:
            assert (side.align.embeddings == full.align.embeddings).all()
        for name, cs in side.codes.items():
            assert (cs.codes == full.codes[name].codes).all()
        assert len(memo) == len(plan.reads)
        again = load_entries(cache, keys, plan.reads, memo)
        assert again.data is side.data  # from the memo, not read again
    assert plan_cell(cfg, "aligned_codes", "sim", 0, keys).reads[0] == ("data", "")


def test_entry_order_takes_what_cells_read_first_and_keeps_every_input_before_its_reader() -> None:
    from benchmark.engine.plan import cells_of
    from benchmark.itemside.stages import ITEM_SIDE, entry_order

    cfg = load_config("movielens-100k")
    table = [(s.name, i) for s in ITEM_SIDE for i in s.instances(cfg)]
    assert [(s.name, i) for s, i in entry_order(cfg)] == table  # nothing first: the table's order
    keys = item_side_keys(cfg, "data-key", 0)
    first = {e for v, m, s in cells_of(cfg) for e in plan_cell(cfg, v, m, s, keys).reads}
    order = [(s.name, i) for s, i in entry_order(cfg, first)]
    assert sorted(order) == sorted(table)  # the same entries
    for pos, (stage, inst) in enumerate(order):  # topological: all of an input stage's entries come before
        st = next(s for s in ITEM_SIDE if s.name == stage)
        assert all(pos > k for k, (s2, _) in enumerate(order) if s2 in st.inputs_of(inst)), (stage, inst)
    read_codes = [i for s, i in order if s == "codes" and ("codes", i) in first]
    assert order[:3] == [("data", ""), ("frozen", ""), ("codes", "frozen_rq_kmeans")]  # SIM's search codes
    assert order[3:5] == [("pairs", ""), ("align", "")]
    assert order[5:5 + len(read_codes) - 1] == [("codes", i) for i in read_codes[1:]]  # then the aligned ones
    assert all(("codes", i) not in first for s, i in order[5 + len(read_codes) - 1:])  # the panel's last


def test_cell_cost_puts_a_pooled_model_over_a_vq_bag_first() -> None:
    from benchmark.engine.plan import GUESS_EPOCH_SECONDS, cell_cost

    cfg = load_config("movielens-100k")
    keys = item_side_keys(cfg, "data-key", 0)

    def cost(variant: str, model: str) -> float:
        plan = plan_cell(cfg, variant, model, 0, keys)
        return cell_cost(model, [plan.code_set, plan.vq_set])

    assert cost("aligned_codes", "dlrm") == GUESS_EPOCH_SECONDS["dlrm"]
    assert cost("aligned_codes_vq", "dlrm") > cost("aligned_codes", "sim") > cost("aligned_codes", "dlrm")
    assert cost("aligned_codes_vq", "sim") == cost("aligned_codes", "sim")  # a sequence model: one bag per item
    assert cell_cost("dlrm", [None], {"dlrm": 0.5}) == 0.5  # a recorded epoch time wins over the guess
