"""Sampled negatives (data.negatives): relational checks against a per-row reference on a seeded click log."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from benchmark.config.data import KuaiRandConfig, KuaiRecConfig, MicroLensConfig, NegativesConfig
from benchmark.core.errors import ConfigError
from benchmark.data import DataConfig, SplitConfig, build_prepared, prepare
from benchmark.data.negatives import SeenIndex, sample
from benchmark.data.preparation import FORMAT_VERSION, fingerprint
from benchmark.data.schema import RawData, validate


def click_log(n_users: int = 30, n_items: int = 40, per_user: int = 15, seed: int = 0) -> RawData:
    """Every row a click (label 1) at a distinct time; item 39 is in the catalogue but never clicked."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items - 1, size=per_user, replace=False)
        times = rng.choice(10_000, size=per_user, replace=False)
        rows += [(str(u), str(i), int(t), 1) for i, t in zip(items, times)]
    inter = pl.DataFrame(rows, schema={"user_id": pl.Utf8, "item_id": pl.Utf8, "ts": pl.Int64, "label": pl.Int8},
                         orient="row")
    items = pl.DataFrame({"item_id": [str(i) for i in range(n_items)], "text": [f"item {i}" for i in range(n_items)]})
    return validate(RawData(inter, items, None, "test"), on_duplicate="error", on_unknown_item="error")


def cfg(kind: str = "uniform", ratio: int = 3, seed: int = 0, cold: float = 0.2) -> DataConfig:
    return DataConfig(dataset="synthetic", history_len=5, split=SplitConfig(cold_item_frac=cold),
                      negatives=NegativesConfig(kind=kind, ratio=ratio, seed=seed))  # type: ignore[arg-type]


def first_seen(raw: RawData) -> dict[tuple[int, int], int]:
    """(user, item) -> earliest ts, from the raw log (ids are the integers the idx maps preserve)."""
    out: dict[tuple[int, int], int] = {}
    for u, i, t in raw.interactions.select("user_id", "item_id", "ts").iter_rows():
        key = (int(u), int(i))
        out[key] = min(out.get(key, t), t)
    return out


@pytest.mark.parametrize("kind", ["uniform", "popularity"])
def test_negatives_respect_time_cold_and_ratio(kind: str) -> None:
    raw = click_log()
    base = build_prepared(raw, cfg("none"), "fp")
    p = build_prepared(raw, cfg(kind), "fp")
    seen = first_seen(raw)
    warm = set(base.items.filter(~pl.col("is_cold"))["item_idx"].to_list())
    assert_frame_equal(p.items, base.items)  # sampled negatives make no item warm, cold or more popular
    for name in ("train", "val", "test"):
        real, got = getattr(base, name), getattr(p, name)
        assert_frame_equal(got.filter(pl.col("label") == 1), real)  # the real rows are untouched
        negs = got.filter(pl.col("label") == 0)
        # ratio: every positive gets `ratio` distinct negatives at its (user, ts), none of them seen by then
        per = negs.group_by("user_idx", "ts").agg(pl.col("item_idx")).sort("user_idx", "ts")
        assert per.height == real.height
        for u, t, its in per.iter_rows():
            assert len(its) == len(set(its)) == 3
            assert all(seen.get((u, i), t + 1) > t for i in its), (u, t, its)
        if name == "train":
            assert set(negs["item_idx"].to_list()) <= warm  # never a cold item (nor one without train rows)
        # a negative carries its positive's history: the positives-only history at (user, ts)
        by_key = dict(zip(zip(real["user_idx"].to_list(), real["ts"].to_list()), real["hist_item_idx"].to_list()))
        assert [by_key[(u, t)] for u, t in got.select("user_idx", "ts").iter_rows()] == got["hist_item_idx"].to_list()
        assert got.select("user_idx", "ts", "item_idx").rows() == sorted(got.select("user_idx", "ts", "item_idx").rows())
    s = p.stats["negatives"]
    assert (s["kind"], s["ratio"], s["seed"]) == (kind, 3, 0)
    assert [s[f"{n}_negatives"] for n in ("train", "val", "test")] == [3 * getattr(base, n).height
                                                                       for n in ("train", "val", "test")]
    assert p.stats["train"] == 4 * base.stats["train"]


def test_val_and_test_negatives_reach_cold_items() -> None:
    p = build_prepared(click_log(), cfg("uniform", ratio=5), "fp")
    cold = set(p.items.filter(pl.col("is_cold"))["item_idx"].to_list())
    assert 39 in cold  # never clicked: cold without being drawn
    for name in ("val", "test"):
        negs = getattr(p, name).filter(pl.col("label") == 0)
        assert cold & set(negs["item_idx"].to_list()), name
    test_cold = p.test.filter(pl.col("item_idx").is_in(list(cold)))
    assert set(test_cold["label"].to_list()) == {0, 1}  # the cold slice has both labels


def test_popularity_tilts_towards_popular_items() -> None:
    """P(j) ~ (count + 1)^0.75: the most trained item is drawn more often than under uniform draws."""
    raw = click_log(n_users=60, per_user=20)
    uni = build_prepared(raw, cfg("uniform", ratio=4), "fp")
    pop = build_prepared(raw, cfg("popularity", ratio=4), "fp")
    count = uni.items.sort("train_count", "item_idx", descending=True)
    head = set(count.head(5)["item_idx"].to_list())

    def share(p):  # noqa: ANN001, ANN202
        negs = p.train.filter(pl.col("label") == 0)
        return negs["item_idx"].is_in(list(head)).mean()

    assert share(pop) > share(uni)


def test_negatives_are_deterministic_and_follow_their_seed() -> None:
    raw = click_log()
    a, b = build_prepared(raw, cfg(seed=0), "fp"), build_prepared(raw, cfg(seed=0), "fp")
    c = build_prepared(raw, cfg(seed=1), "fp")
    for name in ("train", "val", "test"):
        assert_frame_equal(getattr(a, name), getattr(b, name))
    assert not a.train.equals(c.train)


def test_short_when_the_user_has_seen_almost_everything() -> None:
    """A user who has seen all but one pool item gets that one item and no more; the shortfall is counted."""
    seen = SeenIndex(np.zeros(4, np.int64), np.array([0, 1, 2, 3]), np.zeros(4, np.int64), n_items=5)
    row, neg = sample(np.array([0]), np.array([10]), np.array([0]), np.arange(5), None, seen, 3,
                      np.random.default_rng(0))
    assert row.tolist() == [0] and neg.tolist() == [4]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 6), st.integers(0, 5)), min_size=1, max_size=30),
       st.lists(st.tuples(st.integers(0, 4), st.integers(0, 7), st.integers(-1, 6)), min_size=1, max_size=20))
def test_seen_index_matches_a_set_reference(log: list[tuple[int, int, int]],
                                            queries: list[tuple[int, int, int]]) -> None:
    u, i, t = (np.array(c, dtype=np.int64) for c in zip(*log))
    idx = SeenIndex(u, i, t, n_items=8)
    qu, qi, qt = (np.array(c, dtype=np.int64) for c in zip(*queries))
    want = [any(a == x and b == y and c <= z for a, b, c in log) for x, y, z in queries]
    assert idx.seen(qu, qi, qt).tolist() == want


def old_fingerprint(cfg: DataConfig, files: list[dict]) -> str:
    """The fingerprint as computed before data.negatives, data.kuairand, data.kuairec,
    data.microlens.covers_dir, data.split.seeds, data.split.seed_pairing, data.synthetic.content and
    data.split.val_cold_item_frac existed."""
    c = dataclasses.asdict(cfg)
    for name in ("cache_dir", "root", "negatives", "kuairand", "kuairec"):
        c.pop(name)
    c["microlens"].pop("covers_dir")
    c["split"].pop("seeds")
    c["split"].pop("seed_pairing")
    c["split"].pop("val_cold_item_frac")
    c["synthetic"].pop("content")
    blob = json.dumps({"v": FORMAT_VERSION, "cfg": c, "files": files}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def test_defaults_keep_every_data_key() -> None:
    files = [{"name": "x.csv", "bytes": 3, "sha256": "ab"}]
    for c in (DataConfig(), DataConfig(dataset="synthetic", history_len=20), DataConfig(dataset="microlens")):
        assert fingerprint(c, files) == old_fingerprint(c, files)
    changed = [DataConfig(negatives=NegativesConfig(kind="uniform")), DataConfig(negatives=NegativesConfig(seed=1)),
               DataConfig(kuairand=KuaiRandConfig(test_on_random=True)), DataConfig(kuairec=KuaiRecConfig(threshold=1.0)),
               DataConfig(microlens=MicroLensConfig(covers_dir="covers")),
               DataConfig(split=SplitConfig(seeds=(0, 1), seed_pairing="zipped")),
               DataConfig(split=SplitConfig(val_cold_item_frac=0.1))]
    keys = {fingerprint(c, files) for c in changed}
    assert len(keys) == len(changed) and fingerprint(DataConfig(), files) not in keys


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ConfigError, match="ratio"):
        NegativesConfig(kind="uniform", ratio=0)
    with pytest.raises(ConfigError, match="exponent"):
        NegativesConfig(kind="popularity", exponent=-1.0)


def test_movielens_implicit_suite(tmp_path: Path, recbole_dir: Path) -> None:
    """benchmark/configs/movielens-100k-implicit.toml: every rating a click, 4 uniform negatives per click."""
    from benchmark.config.suite import load_config

    data = load_config("movielens-100k-implicit").data
    assert data.negatives == NegativesConfig(kind="uniform", ratio=4, seed=0)
    mini = dataclasses.replace(data, root=str(recbole_dir), verify_sha256=False, split=SplitConfig(cold_item_frac=0.0))
    p = prepare(mini, cache_dir=tmp_path / "c")
    assert p.stats["positives"] == p.stats["impressions"] == 5  # the five fixture ratings, 1 to 5 stars
    rows = pl.concat([p.train, p.val, p.test])
    assert rows.filter(pl.col("label") == 0).height == 4 * rows.filter(pl.col("label") == 1).height - sum(
        p.stats["negatives"][f"{n}_short"] for n in ("train", "val", "test"))
