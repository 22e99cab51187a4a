"""The stage graph (declared once) and the stage cache: keys cover exactly their slice, --force follows the
graph, entries appear atomically and are verified by content on every read."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.config.suite import load_config, sweep_configs
from benchmark.core.cache import SUCCESS, StageCache
from benchmark.itemside.stages import (
    ITEM_SIDE,
    STAGE_NAMES,
    STAGES,
    downstream_closure,
    item_side_keys,
    needed_code_sets,
)


def test_the_table_is_the_graph() -> None:
    assert STAGE_NAMES == ("data", "pairs", "frozen", "align", "codes", "rank", "report")
    seen: set[str] = set()
    for stage in STAGES:  # topological order: every upstream stage comes earlier
        assert set(stage.upstream) <= seen, stage.name
        seen.add(stage.name)
    assert [s.name for s in ITEM_SIDE] == ["data", "pairs", "frozen", "align", "codes"]


def test_force_closure_follows_the_table() -> None:
    assert downstream_closure(["codes"]) == {"codes", "rank", "report"}
    assert downstream_closure(["pairs"]) == {"pairs", "align", "codes", "rank", "report"}
    assert downstream_closure(["frozen"]) == {"frozen", "align", "codes", "rank", "report"}
    assert downstream_closure(["data"]) == set(STAGE_NAMES)
    assert downstream_closure([]) == set()


def _keys(*overrides: str, seed: int = 0):
    return item_side_keys(load_config(None, list(overrides)), "data-key", seed)


def test_code_set_keys_cover_only_what_each_fits() -> None:
    base = _keys()
    panel = {f"{s}_rq_kmeans.{m}" for s in ("frozen", "aligned") for m in ("dedup", "fsq", "balanced")}
    assert set(base.code_sets) == {"frozen_rq_kmeans", "aligned_rq_kmeans", "frozen_rq_vae", "aligned_rq_vae",
                                   "aligned_vq"} | panel
    # which quantizer feeds the *_codes variants changes no fit (ablation-quantizer reuses every code set)
    q = _keys("quantize.quantizer=rq_vae")
    assert {k: v for k, v in q.code_sets.items() if k in base.code_sets} == base.code_sets
    vae = _keys("quantize.rq_vae.epochs=7")
    assert {k for k in base.code_sets if vae.code_sets[k] != base.code_sets[k]} == {"frozen_rq_vae", "aligned_rq_vae"}
    fsq = _keys("quantize.fsq_levels=8,8")  # only the FSQ panel sets read it
    assert {k for k in base.code_sets if fsq.code_sets[k] != base.code_sets[k]} == {"frozen_rq_kmeans.fsq",
                                                                                  "aligned_rq_kmeans.fsq"}
    tok = _keys("quantize.tokens.scheme=spm")  # tokenisation changes no code set (only the cells that read it)
    assert tok.code_sets == base.code_sets
    vq = _keys("quantize.vq_k=5")
    assert {k for k in base.code_sets if vq.code_sets[k] != base.code_sets[k]} == {"aligned_vq"}
    levels = _keys("quantize.levels=2")
    assert levels.code_sets["aligned_vq"] == base.code_sets["aligned_vq"]
    assert levels.stages == base.stages  # codes settings never reach the stages before them


def test_stage_keys_change_downstream_only() -> None:
    base = _keys()
    align = _keys("align.epochs=3")
    assert {s for s in base.stages if align.stages[s] != base.stages[s]} == {"align"}
    assert align.code_sets["frozen_rq_kmeans"] == base.code_sets["frozen_rq_kmeans"]
    assert align.code_sets["aligned_rq_kmeans"] != base.code_sets["aligned_rq_kmeans"]
    enc = _keys("encoder.max_length=32")
    assert {s for s in base.stages if enc.stages[s] != base.stages[s]} == {"frozen", "align"}
    rank = _keys("rank.epochs=3")
    assert rank.stages == base.stages and rank.code_sets == base.code_sets


def test_a_replicate_seed_reaches_only_seeded_stages() -> None:
    a, b = _keys(seed=0), _keys(seed=1)
    assert a.stages["data"] == b.stages["data"] and a.stages["frozen"] == b.stages["frozen"]
    assert all(a.stages[s] != b.stages[s] for s in ("pairs", "align"))
    assert all(a.code_sets[n] != b.code_sets[n] for n in a.code_sets)


def test_needed_code_sets_follow_the_variants() -> None:
    cfg = load_config(None, ["suite.variants=id_only,frozen_codes"])
    assert set(needed_code_sets(cfg)) >= {"frozen_rq_kmeans", "aligned_rq_kmeans", "frozen_rq_vae", "aligned_rq_vae"}
    assert needed_code_sets(cfg)[0] == "frozen_rq_kmeans"  # the variants' sets first
    assert "aligned_vq" in needed_code_sets(load_config(None, ["quantize.quantizer=vq"]))


def test_every_packaged_sweep_shares_its_unchanged_entries() -> None:
    runs = sweep_configs("ablation-quantizer")
    keys = [item_side_keys(cfg, "d", 0).code_sets for _, cfg in runs]
    merged: dict[str, set[str]] = {}
    for k in keys:
        for name, key in k.items():
            merged.setdefault(name, set()).add(key)
    assert all(len(v) == 1 for v in merged.values())  # each code set is fitted once, shared by every value
    assert set(merged) >= {"frozen_rq_kmeans", "aligned_rq_kmeans", "frozen_rq_vae", "aligned_rq_vae", "frozen_vq",
                           "aligned_vq"}


# ---- the cache ------------------------------------------------------------------------------------


def test_entry_appears_only_after_success_and_is_sealed(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    assert not cache.done("codes", "h1")
    with cache.writing("codes", "h1") as d:
        (d / "codes.npy").write_bytes(b"x")
        assert not cache.path("codes", "h1").exists()  # invisible while being written
    assert StageCache(tmp_path).done("codes", "h1")
    assert (cache.path("codes", "h1") / "codes.npy").read_bytes() == b"x"
    assert '"codes.npy"' in (cache.path("codes", "h1") / SUCCESS).read_text()  # its content hash is recorded


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    with pytest.raises(RuntimeError), cache.writing("codes", "h1") as d:
        (d / "partial.npy").write_bytes(b"x")
        raise RuntimeError("killed")
    assert not cache.path("codes", "h1").exists()
    assert not (tmp_path / "codes").exists()  # not even an empty stage folder


@pytest.mark.parametrize("tamper", ["truncate", "alter", "delete"])
def test_a_tampered_entry_is_reported_and_recomputed(tmp_path: Path, tamper: str) -> None:
    with StageCache(tmp_path).writing("align", "k") as d:
        (d / "embeddings.npy").write_bytes(b"0123456789")
    f = tmp_path / "align" / "k" / "embeddings.npy"
    if tamper == "truncate":
        f.write_bytes(b"01234")
    elif tamper == "alter":
        f.write_bytes(b"0123456780")  # same size, other content
    else:
        f.unlink()
    said: list[str] = []
    cache = StageCache(tmp_path, on_invalid=said.append)
    assert cache.is_cached("align", "k")  # `plan` sees a sealed entry ...
    assert not cache.done("align", "k")  # ... but a reader verifies it, reports it and drops it
    assert said and "align/k" in said[0] and "embeddings.npy" in said[0] and "recomputing" in said[0]
    assert not cache.path("align", "k").exists()
    with cache.writing("align", "k") as d:
        (d / "embeddings.npy").write_bytes(b"0123456789")
    assert StageCache(tmp_path).done("align", "k")


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
