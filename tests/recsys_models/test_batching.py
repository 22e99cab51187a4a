"""Split frames -> tensors once, then batches (recsys_models.batching)."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from recsys_models.batching import iter_batches, split_arrays
from recsys_models.errors import RecsysModelError
from recsys_models.features import FeatureSet, FeatureSpec, ItemField

N, U = 6, 3
CODES = torch.tensor([[0, 1], [1, 1], [2, 0], [0, 0], [1, 2], [2, 2]], dtype=torch.int64)


def _features() -> FeatureSet:
    fields = (ItemField("rq_0", "t_rq_0", 3), ItemField("rq_1", "t_rq_1", 3))
    spec = FeatureSpec(n_items=N, n_users=U, embedding_dim=4, item_fields=fields)
    return FeatureSet(spec=spec, item_tokens={"rq_0": CODES[:, :1], "rq_1": CODES[:, 1:]})


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {"user_idx": [0, 1, 2], "item_idx": [5, 4, 3], "ts": [1, 2, 3], "label": [1, 0, 1],
         "hist_item_idx": [[1, 2, 3], [], [4]]},
        schema_overrides={"user_idx": pl.Int32, "item_idx": pl.Int32, "label": pl.Int8,
                          "hist_item_idx": pl.List(pl.Int32)},
    )


def test_split_arrays_keep_latest_history() -> None:
    arrays = split_arrays(_frame(), max_hist=2, n_items=N, n_users=U)
    # the latest 2 of [1, 2, 3] are [2, 3] (oldest first), padded with 0 on the right
    assert arrays.hist.tolist() == [[2, 3], [0, 0], [4, 0]]
    assert arrays.hist_len.tolist() == [2, 0, 1] and arrays.labels.tolist() == [1.0, 0.0, 1.0]


def test_split_arrays_rejects_bad_rows() -> None:
    with pytest.raises(RecsysModelError, match="item_idx must lie in"):
        split_arrays(_frame().with_columns(item_idx=pl.lit(9, pl.Int32)), max_hist=2, n_items=N, n_users=U)
    with pytest.raises(RecsysModelError, match="missing column 'label'"):
        split_arrays(_frame().drop("label"), max_hist=2, n_items=N, n_users=U)


def test_iter_batches_cover_every_row_once() -> None:
    fs = _features()
    arrays = split_arrays(_frame(), max_hist=5, n_items=N, n_users=U)
    batches = list(iter_batches(fs, arrays, 2, torch.Generator().manual_seed(0)))
    assert [b.labels.shape[0] for b in batches] == [2, 1]
    assert sorted(torch.cat([b.item_idx for b in batches]).tolist()) == [3, 4, 5]
    for b in batches:  # each batch's history width is its own longest row
        assert b.hist.shape[1] == max(1, int(b.hist_len.max()))
