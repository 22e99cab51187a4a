"""The stage cache: atomic entries, skip when finished, --force closure over the DAG."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.stages import StageCache, downstream_closure


def test_force_closure_follows_the_dag() -> None:
    assert downstream_closure(["codes"]) == {"codes", "rank", "report"}
    assert downstream_closure(["pairs"]) == {"pairs", "align", "codes", "rank", "report"}
    assert downstream_closure(["frozen"]) == {"frozen", "align", "codes", "rank", "report"}
    assert downstream_closure([]) == set()


def test_entry_appears_only_after_success(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    assert not cache.done("codes", "h1")
    with cache.writing("codes", "h1") as d:
        (d / "codes.npy").write_bytes(b"x")
        assert not cache.path("codes", "h1").exists()  # invisible while being written
    assert cache.done("codes", "h1")
    assert (cache.path("codes", "h1") / "codes.npy").read_bytes() == b"x"


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    with pytest.raises(RuntimeError), cache.writing("codes", "h1") as d:
        (d / "partial.npy").write_bytes(b"x")
        raise RuntimeError("killed")
    assert not cache.path("codes", "h1").exists()
    assert list((tmp_path / "codes").iterdir()) == []


def test_forced_stage_recomputes_once_and_replaces(tmp_path: Path) -> None:
    with StageCache(tmp_path).writing("codes", "h1") as d:
        (d / "v").write_text("old")
    cache = StageCache(tmp_path, force=["codes"])
    assert not cache.done("codes", "h1") and cache.is_cached("codes", "h1")
    with cache.writing("codes", "h1") as d:
        (d / "v").write_text("new")
    assert cache.done("codes", "h1")  # forced once per invocation, not forever
    assert (cache.path("codes", "h1") / "v").read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "codes").iterdir()) == ["h1"]


def test_clean_partial(tmp_path: Path) -> None:
    (tmp_path / "codes" / ".tmp-h1-abcd").mkdir(parents=True)
    assert StageCache(tmp_path).clean_partial() == 1
