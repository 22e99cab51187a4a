"""AUC, GAUC, LogLoss and slices: hand-computed examples and a cross-check against torchmetrics."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from benchmark.cells.metrics import auc, gauc, logloss, slice_metrics
from benchmark.core.errors import DataError


def test_auc_by_hand() -> None:
    # positives 0.9 and 0.4, negatives 0.8 and 0.1: 0.9 beats both, 0.4 beats 0.1 only -> 3 of 4 pairs.
    assert auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.4, 0.1])) == pytest.approx(0.75)
    assert auc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)  # a tie counts one half
    assert math.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_torchmetrics(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.random(500), 2)  # rounding creates ties
    ref = float(binary_auroc(torch.from_numpy(p), torch.from_numpy(y)))
    assert auc(y, p) == pytest.approx(ref, abs=1e-6)


def test_gauc_three_users_by_hand() -> None:
    users = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])
    labels = np.array([1, 0, 0, 1, 1, 0, 0, 1, 1])
    preds = np.array([0.9, 0.5, 0.95, 0.8, 0.7, 0.1, 0.75, 0.3, 0.6])
    # user 0: positive 0.9 beats 0.5, loses to 0.95 -> AUC 1/2, 3 impressions.
    # user 1: 0.8 beats 0.1 and 0.75; 0.7 beats 0.1 only -> AUC 3/4, 4 impressions.
    # user 2: positives only -> excluded. GAUC = (3 * 1/2 + 4 * 3/4) / 7.
    assert gauc(users, labels, preds) == pytest.approx((3 * 0.5 + 4 * 0.75) / 7)


def test_gauc_nan_without_mixed_users() -> None:
    assert math.isnan(gauc(np.array([0, 1]), np.array([1, 0]), np.array([0.5, 0.5])))


def test_logloss_by_hand_and_clipped() -> None:
    assert logloss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert logloss(np.array([1]), np.array([0.0])) == pytest.approx(-math.log(1e-7))


def test_shape_mismatch_raises() -> None:
    with pytest.raises(DataError, match="shape"):
        auc(np.array([1, 0]), np.array([0.5]))


def test_slice_metrics_slices() -> None:
    items = pl.DataFrame({"item_idx": [0, 1, 2], "is_cold": [True, False, False], "pop_bucket": [0, 0, 1]},
                         schema_overrides={"item_idx": pl.Int32, "pop_bucket": pl.Int8})
    frame = pl.DataFrame({
        "user_idx": [0, 0, 1, 1, 1], "item_idx": [0, 1, 1, 2, 0], "label": [1, 0, 0, 1, 0],
        "pred": [0.9, 0.2, 0.3, 0.7, 0.8],
    })
    out = slice_metrics(frame, items)
    assert set(out) == {"all", "cold", "warm", "pop_bucket_0", "pop_bucket_1"}
    assert out["all"]["n"] == 5 and out["cold"]["n"] == 2 and out["warm"]["n"] == 3
    # the buckets split the warm items only: the cold item 0 (pop_bucket 0 in the frame) is the cold slice's
    assert out["pop_bucket_0"]["n"] == 2 and out["pop_bucket_1"]["n"] == 1
    assert out["pop_bucket_0"]["n"] + out["pop_bucket_1"]["n"] == out["warm"]["n"]
    assert out["all"]["auc"] == pytest.approx(auc(frame["label"].to_numpy(), frame["pred"].to_numpy()))
    # warm rows: labels 0, 0, 1 with preds 0.2, 0.3, 0.7 -> perfectly ranked.
    assert out["warm"]["auc"] == pytest.approx(1.0)
    # sizes by hand: cold rows (u0, i0, 1), (u1, i0, 0): 1 item, 2 users, neither with both labels -> GAUC undefined
    assert {k: out["cold"][k] for k in ("n_items", "n_users", "n_gauc_users")} == {
        "n_items": 1, "n_users": 2, "n_gauc_users": 0}
    assert math.isnan(out["cold"]["gauc"])
    # all rows: items 0, 1, 2; users 0 (labels 1, 0) and 1 (0, 1, 0) both have both labels
    assert (out["all"]["n_items"], out["all"]["n_users"], out["all"]["n_gauc_users"]) == (3, 2, 2)
    with pytest.raises(DataError, match="missing from the items"):
        slice_metrics(frame.with_columns(item_idx=pl.lit(9)), items)


def test_a_popularity_bucket_of_cold_items_only_is_no_slice() -> None:
    items = pl.DataFrame({"item_idx": [0, 1], "is_cold": [True, False], "pop_bucket": [0, 1]},
                         schema_overrides={"item_idx": pl.Int32, "pop_bucket": pl.Int8})
    frame = pl.DataFrame({"user_idx": [0, 0, 1, 1], "item_idx": [0, 1, 0, 1], "label": [1, 0, 0, 1],
                          "pred": [0.9, 0.2, 0.3, 0.7]})
    assert set(slice_metrics(frame, items)) == {"all", "cold", "warm", "pop_bucket_1"}


def test_weighted_auc_is_the_auc_of_repeated_rows() -> None:
    from benchmark.cells.metrics import auc, weighted_auc

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 40)
    p = np.round(rng.random(40), 1)  # many ties
    w = rng.integers(0, 4, 40)
    assert weighted_auc(y, p, np.ones(40)) == pytest.approx(auc(y, p))
    assert weighted_auc(y, p, w) == pytest.approx(auc(np.repeat(y, w), np.repeat(p, w)))
    both = weighted_auc(y, p, np.stack([np.ones(40), w]))
    assert both.shape == (2,) and both[1] == pytest.approx(auc(np.repeat(y, w), np.repeat(p, w)))


def test_bootstrap_interval_brackets_the_auc_and_shrinks_with_data() -> None:
    from benchmark.cells.metrics import auc, bootstrap_auc

    rng = np.random.default_rng(0)

    def draw(n_users: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        users = np.repeat(np.arange(n_users), 10)
        y = rng.integers(0, 2, users.size)
        return users, y, y * 0.3 + rng.random(users.size)

    small, large = draw(30), draw(300)
    lo, hi = bootstrap_auc(*small, seed=1)
    assert lo < auc(small[1], small[2]) < hi
    lo2, hi2 = bootstrap_auc(*large, seed=1)
    assert hi2 - lo2 < hi - lo  # ten times the users: a narrower test-set interval
    assert bootstrap_auc(*small, seed=1) == (lo, hi)  # seeded
    assert bootstrap_auc(np.arange(4), np.ones(4), np.random.default_rng(0).random(4)) is None  # one class


def test_gauc_is_bit_for_bit_the_same_in_any_row_order() -> None:
    """The per-user sums are exactly rounded (math.fsum): the unordered group-by cannot move the last bits."""
    rng = np.random.default_rng(0)
    u, y, p = rng.integers(0, 300, 6000), rng.integers(0, 2, 6000), rng.random(6000)
    first = gauc(u, y, p)
    for _ in range(3):
        perm = rng.permutation(6000)
        assert gauc(u[perm], y[perm], p[perm]) == first
