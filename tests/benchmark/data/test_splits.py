"""Splits, cold items, history and popularity: exact small cases, leak-freedom, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.data import DataConfig, SplitConfig, SyntheticConfig, build_prepared
from benchmark.data import synthetic as syn
from benchmark.data.history import build_history, build_history_slow
from benchmark.data.schema import RawData, validate
from benchmark.data.splits import kcore, natural_order, popularity_buckets


def raw_from(rows: list[tuple[str, str, int, int]], n_items: int | None = None) -> RawData:
    inter = pl.DataFrame(rows, schema={"user_id": pl.Utf8, "item_id": pl.Utf8, "ts": pl.Int64, "label": pl.Int8},
                         orient="row")
    ids = sorted({r[1] for r in rows} | {str(i) for i in range(n_items or 0)}, key=int)
    items = pl.DataFrame({"item_id": ids, "text": [f"item {i}" for i in ids]})
    return validate(RawData(inter, items, None, "test"), on_duplicate="error", on_unknown_item="error")


def cfg(kind: str = "per_user_temporal", cold: float = 0.0, T: int = 50, seed: int = 0) -> DataConfig:
    return DataConfig(dataset="test", history_len=T, split=SplitConfig(kind=kind, cold_item_frac=cold, seed=seed))


def test_per_user_temporal_counts() -> None:
    # user 1: 10 impressions -> 8/1/1; user 2: 20 -> 16/2/2; user 3: 5 -> floor(0.5) = 0 val/test.
    rows = [("1", str(i), 100 + i, 1) for i in range(10)] + [("2", str(i), 200 + i, 0) for i in range(20)]
    rows += [("3", str(i), 50 + i, 1) for i in range(5)]
    p = build_prepared(raw_from(rows), cfg(), "fp")
    per = {name: df.group_by("user_idx").len().sort("user_idx")["len"].to_list()
           for name, df in (("train", p.train), ("val", p.val), ("test", p.test))}
    assert per == {"train": [8, 16, 5], "val": [1, 2], "test": [1, 2]}
    # test holds each user's latest impressions
    assert p.test.filter(pl.col("user_idx") == 0)["ts"].to_list() == [109]
    assert p.val.filter(pl.col("user_idx") == 1)["ts"].to_list() == [216, 217]


def test_global_temporal_ties_go_later() -> None:
    rows = [(str(u), str(u), 1 + u // 2, 1) for u in range(10)]  # ts 1,1,2,2,3,3,4,4,5,5
    p = build_prepared(raw_from(rows), cfg("global_temporal"), "fp")
    # floor(10 * 0.8) = 8 -> t_val = ts[8] = 5; floor(10 * 0.9) = 9 -> t_test = ts[9] = 5
    assert (p.train.height, p.val.height, p.test.height) == (8, 0, 2)
    rows = [(str(u), str(u), u, 1) for u in range(10)]
    p = build_prepared(raw_from(rows), cfg("global_temporal"), "fp")
    assert (p.train["ts"].max(), p.val["ts"].to_list(), p.test["ts"].to_list()) == (7, [8], [9])


def test_leave_last_out() -> None:
    rows = [("1", "1", 1, 1), ("1", "2", 2, 1), ("1", "3", 3, 0), ("2", "1", 5, 1)]
    p = build_prepared(raw_from(rows), cfg("leave_last_out"), "fp")
    # item ids "1", "2", "3" -> item_idx 0, 1, 2
    assert p.train[["user_idx", "item_idx"]].rows() == [(0, 0)]
    assert p.val[["user_idx", "item_idx"]].rows() == [(0, 1)]
    assert p.test[["user_idx", "item_idx"]].rows() == [(0, 2), (1, 0)]  # single-impression user -> test
    assert p.stats["cold_user_share_test"] == 0.5


def test_history_exact_ties_and_strictly_before() -> None:
    # user 1: x=0 at t1 (pos), y=1 at t2 (pos), z=2 at t2 (pos), w=3 at t3 (neg), v=4 at t3 (pos)
    rows = [("1", "0", 1, 1), ("1", "2", 2, 1), ("1", "1", 2, 1), ("1", "3", 3, 0), ("1", "4", 3, 1)]
    log = raw_from(rows).interactions
    item = log["item_id"].cast(pl.Int32).to_numpy()
    args = (np.zeros(5, np.int32), log["ts"].to_numpy(), item, log["label"].to_numpy())
    want = {0: [], 2: [0], 1: [0], 3: [0, 1, 2], 4: [0, 1, 2]}  # same-ts positives: by item_idx, both excluded
    got = dict(zip(item.tolist(), build_history(*args, T=50).to_list()))
    assert got == want
    got2 = dict(zip(item.tolist(), build_history(*args, T=2).to_list()))
    assert got2[3] == [1, 2] and got2[2] == [0]
    assert build_history(*args, T=0).to_list() == [[]] * 5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(0, 9), st.integers(0, 1)),
                min_size=0, max_size=60), st.integers(0, 5))
def test_history_fast_equals_slow(rows: list[tuple[int, int, int, int]], T: int) -> None:
    a = np.array(rows, dtype=np.int64).reshape(-1, 4)
    args = (a[:, 0], a[:, 2], a[:, 1], a[:, 3])
    assert build_history(*args, T=T).to_list() == build_history_slow(*args, T=T)


@pytest.fixture(scope="module")
def small() -> tuple[DataConfig, RawData]:
    c = DataConfig(dataset="synthetic", synthetic=SyntheticConfig(n_users=200, n_items=120, n_interactions=4000),
                   history_len=10, split=SplitConfig(cold_item_frac=0.2, seed=3))
    return c, syn.generate(c.synthetic)


@pytest.mark.parametrize("kind", ["per_user_temporal", "global_temporal", "leave_last_out"])
def test_no_future_in_history_and_cold_items_held_out(small, kind: str) -> None:
    c, raw = small
    c = DataConfig(dataset="synthetic", history_len=10, split=SplitConfig(kind=kind, cold_item_frac=0.2, seed=3))
    p = build_prepared(raw, c, "fp")
    everything = pl.concat([p.train, p.val, p.test])
    positives = everything.filter(pl.col("label") == 1).select("user_idx", pl.col("item_idx").alias("h"),
                                                               pl.col("ts").alias("h_ts"))
    exploded = (everything.with_row_index("r").explode("hist_item_idx").drop_nulls("hist_item_idx")
                .rename({"hist_item_idx": "h"}))
    # every history item is a positive of the same user strictly before the impression
    ok = exploded.join(positives, on=["user_idx", "h"]).filter(pl.col("h_ts") < pl.col("ts"))
    assert ok["r"].n_unique() == exploded["r"].n_unique() and exploded.height > 0
    cold = set(p.items.filter("is_cold")["item_idx"].to_list())
    assert len(cold) == round(0.2 * everything["item_idx"].n_unique()) or len(cold) > 0
    for df in (p.train, p.val):
        assert not set(df["item_idx"].to_list()) & cold
        assert not set(df["hist_item_idx"].explode().drop_nulls().to_list()) & cold
    assert p.items.filter("is_cold")["train_count"].sum() == 0
    assert (p.items.filter("is_cold")["pop_bucket"] == 0).all()


def test_same_seed_same_split_other_seed_other_cold(small) -> None:
    c, raw = small
    a, b = build_prepared(raw, c, "fp"), build_prepared(raw, c, "fp")
    for f in ("train", "val", "test", "items", "users"):
        assert getattr(a, f).equals(getattr(b, f))
    other = DataConfig(dataset="synthetic", history_len=10, split=SplitConfig(cold_item_frac=0.2, seed=4))
    assert not a.items["is_cold"].equals(build_prepared(raw, other, "fp").items["is_cold"])
    assert syn.generate(c.synthetic).interactions.equals(raw.interactions)


def test_cold_items_keep_test_rows_and_all_items_have_rows() -> None:
    rows = [("1", "0", 1, 1), ("1", "1", 2, 1), ("2", "0", 3, 1), ("2", "1", 4, 1)]
    p = build_prepared(raw_from(rows, n_items=4), cfg("leave_last_out", cold=0.5, seed=0), "fp")
    assert p.items["item_idx"].to_list() == [0, 1, 2, 3]  # items 2, 3 have no interactions but keep rows
    cold = p.items.filter("cold_drawn")["item_idx"].to_list()
    assert len(cold) == 1  # round(0.5 * 2 items with interactions)
    # leave-last-out on two rows per user leaves no training row at all: every item is cold (no training
    # impression), the drawn one included
    assert p.items["is_cold"].all() and p.train.height == 0
    # leave-last-out: item 1 is both users' last (test), item 0 their val row; test rows survive
    assert p.test.filter(pl.col("item_idx").is_in(cold)).height == {0: 0, 1: 2}[cold[0]]
    assert p.val.height == 2 - {0: 2, 1: 0}[cold[0]]


def test_cold_and_warm_are_defined_by_training_impressions() -> None:
    """Hand-built: users 1 and 2 with four rows each, per-user temporal with a quarter to test. Item 3 is drawn
    cold; item 2 appears only in test rows (never in train), so it is cold too; items 0 and 1 are warm."""
    rows = [("1", "0", 1, 1), ("1", "1", 2, 0), ("1", "0", 3, 1), ("1", "2", 4, 1),
            ("2", "1", 1, 1), ("2", "0", 2, 1), ("2", "1", 3, 0), ("2", "3", 4, 1)]
    c = cfg("per_user_temporal", cold=0.25, seed=0)
    c = dataclasses.replace(c, split=dataclasses.replace(c.split, test_frac=0.25, val_frac=0.0))
    p = build_prepared(raw_from(rows, n_items=4), c, "fp")
    drawn = p.items.filter("cold_drawn")["item_idx"].to_list()
    assert len(drawn) == 1
    train_items = set(p.train["item_idx"].to_list())
    assert p.items.filter("is_cold")["item_idx"].to_list() == [i for i in range(4) if i not in train_items]
    assert set(drawn) <= set(p.items.filter("is_cold")["item_idx"].to_list())
    assert p.stats["cold_items"] + p.stats["warm_items"] == 4 and p.stats["cold_items_drawn"] == 1
    assert (p.items.filter(~pl.col("is_cold"))["train_count"] > 0).all()
    assert (p.items.filter(pl.col("is_cold"))["pop_bucket"] == 0).all()


def test_kcore_and_natural_order_and_buckets() -> None:
    inter = pl.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "item_id": ["1", "2", "1", "2", "3"]})
    assert kcore(inter, 2).rows() == inter.head(4).rows()  # c and item 3 go
    assert natural_order(pl.Series(["10", "9", "100", "9"])).to_list() == ["9", "10", "100"]
    assert natural_order(pl.Series(["b", "a", "10"])).to_list() == ["10", "a", "b"]
    # warm items 1,2,3,5 ranked by count (1:5, 2:1, 3:3, 5:2) -> 2,5 | 3,1
    assert popularity_buckets(np.array([0, 5, 1, 3, 0, 2]), 2).tolist() == [0, 1, 0, 1, 0, 0]


def test_edge_cases_prepare_quietly(recwarn) -> None:
    # single-impression user, user with no positives, item with empty text
    rows = [("1", "0", 1, 0), ("2", "1", 5, 0), ("2", "0", 6, 0)]
    raw = raw_from(rows, n_items=3)
    raw = RawData(raw.interactions, raw.items.with_columns(pl.lit("").alias("text")), None, "t")
    p = build_prepared(raw, cfg(), "fp")
    assert p.items["text"].to_list() == ["", "", ""] and p.stats["positives"] == 0
    assert p.train.height == 3 and not recwarn.list


def test_history_of_all_rows_is_recboles() -> None:
    """data.history_source = "all_rows": a row's history is the user's earlier rows of any label, ties at one
    timestamp in item order (RecBole's sequential history), against the per-row reference."""
    from benchmark.data.history import build_history_recbole_slow

    rows = [("1", "3", 10, 1), ("1", "1", 10, 0), ("1", "2", 11, 0), ("1", "0", 12, 1), ("2", "1", 5, 0),
            ("2", "2", 6, 1)]
    c = dataclasses.replace(cfg(T=2), history_source="all_rows")
    p = build_prepared(raw_from(rows), c, "fp")
    log = pl.concat([p.train, p.val, p.test]).sort("user_idx", "ts", "item_idx")
    want = build_history_recbole_slow(log["user_idx"].to_numpy(), log["ts"].to_numpy(), log["item_idx"].to_numpy(), 2)
    assert log["hist_item_idx"].to_list() == want
    assert want[1] == [1]  # user 1's item 3 at ts 10 sees item 1 of the same second (a negative): any label


@pytest.mark.parametrize("kind", ["per_user_temporal", "global_temporal"])
def test_validation_cold_draw_leaves_train_and_test_and_the_test_draw_alone(small, kind: str) -> None:
    """data.split.val_cold_item_frac: a second draw, disjoint from the test draw, whose rows stay in validation
    only; the test draw and the test rows of every other item are the same as without it."""
    from benchmark.cells.metrics import cold_slice_metrics

    _, raw = small
    split = SplitConfig(kind=kind, cold_item_frac=0.2, seed=3)
    base = build_prepared(raw, DataConfig(dataset="synthetic", history_len=10, split=split), "fp")
    p = build_prepared(raw, DataConfig(dataset="synthetic", history_len=10,
                                       split=dataclasses.replace(split, val_cold_item_frac=0.2)), "fp")
    assert p.items["cold_drawn"].equals(base.items["cold_drawn"])
    # the same fraction of the same items (those with an impression before either draw) as the test draw
    assert p.stats["val_cold_items_drawn"] == base.stats["cold_items_drawn"] > 0
    assert "val_cold_items_drawn" not in base.stats
    # the drawn items: warm without the draw, no train row with it, and not the test draw
    lost = set(base.items.filter(~pl.col("is_cold"))["item_idx"]) & set(p.items.filter("is_cold")["item_idx"])
    assert lost and not lost & set(p.items.filter("cold_drawn")["item_idx"])
    assert not lost & set(p.train["item_idx"]) and not lost & set(p.test["item_idx"])
    assert set(p.val["item_idx"]) & lost
    cols = ["user_idx", "item_idx", "ts", "label"]
    assert p.test.select(cols).equals(base.test.filter(~pl.col("item_idx").is_in(list(lost))).select(cols))
    assert p.val.height - p.stats["val_cold_drawn_val_rows"] == base.val.filter(
        ~pl.col("item_idx").is_in(list(lost))).height
    # the validation cold slice a cell scores: the rows of items without a train row
    val_cold = cold_slice_metrics(p.val.select("user_idx", "item_idx", "label").with_columns(pred=pl.lit(0.5)),
                                  p.items)["cold"]
    assert val_cold["n"] == p.val.filter(pl.col("item_idx").is_in(p.items.filter("is_cold")["item_idx"].implode())
                                         ).height >= p.stats["val_cold_drawn_val_rows"] > 0
    assert cold_slice_metrics(base.train.select(cols[:2] + ["label"]).with_columns(pred=pl.lit(0.5)),
                              base.items) == {}


def test_validation_cold_settings_are_checked() -> None:
    from benchmark.core.errors import ConfigError

    with pytest.raises(ConfigError, match="val_cold_item_frac"):
        SplitConfig(cold_item_frac=0.6, val_cold_item_frac=0.5)
    with pytest.raises(ConfigError, match="val_cold_item_frac"):
        SplitConfig(val_frac=0.0, val_cold_item_frac=0.1)
