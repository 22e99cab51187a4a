"""Split frames -> tensors once, then batches (recsys_models.batching)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_models.batching import iter_batches, pad_histories, pad_histories_reference, split_arrays
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
    # the latest 2 of [1, 2, 3] are [2, 3] (oldest first); jagged int32 values + offsets, no padding per split
    assert arrays.hist_values.dtype == torch.int32 and arrays.hist_values.tolist() == [2, 3, 4]
    assert arrays.hist_offsets.tolist() == [0, 2, 2, 3]
    assert arrays.hist_len.tolist() == [2, 0, 1] and arrays.labels.tolist() == [1.0, 0.0, 1.0]
    # padded per batch: 0 on the right, width = the batch's longest row
    hist, hist_len = arrays.histories(torch.tensor([2, 0, 1]))
    assert hist.tolist() == [[4, 0], [2, 3], [0, 0]] and hist_len.tolist() == [1, 2, 0]
    assert arrays.histories(torch.tensor([1]))[0].tolist() == [[0]]  # all empty: width 1


def test_split_arrays_null_and_untruncated_histories() -> None:
    frame = _frame().with_columns(pl.Series("hist_item_idx", [[1, 2, 3], None, [4]], dtype=pl.List(pl.Int32)))
    arrays = split_arrays(frame, max_hist=50, n_items=N, n_users=U)  # a null history is an empty one
    assert arrays.hist_values.tolist() == [1, 2, 3, 4] and arrays.hist_offsets.tolist() == [0, 3, 3, 4]
    sliced = split_arrays(pl.concat([frame, frame]).slice(2, 3), max_hist=1, n_items=N, n_users=U)
    assert sliced.hist_values.tolist() == [4, 3] and sliced.hist_offsets.tolist() == [0, 1, 2, 2]


def test_split_arrays_rejects_bad_rows() -> None:
    with pytest.raises(RecsysModelError, match="item_idx must lie in"):
        split_arrays(_frame().with_columns(item_idx=pl.lit(9, pl.Int32)), max_hist=2, n_items=N, n_users=U)
    with pytest.raises(RecsysModelError, match="missing column 'label'"):
        split_arrays(_frame().drop("label"), max_hist=2, n_items=N, n_users=U)
    with pytest.raises(RecsysModelError, match="hist_item_idx must lie in"):
        split_arrays(_frame().with_columns(pl.Series("hist_item_idx", [[6], [], []], dtype=pl.List(pl.Int32))),
                     max_hist=2, n_items=N, n_users=U)
    with pytest.raises(RecsysModelError, match="null items"):
        split_arrays(_frame().with_columns(pl.Series("hist_item_idx", [[1, None], [], []], dtype=pl.List(pl.Int32))),
                     max_hist=2, n_items=N, n_users=U)


@settings(max_examples=40)
@given(lens=st.lists(st.integers(0, 7), min_size=1, max_size=12), max_hist=st.integers(1, 8),
       seed=st.integers(0, 2**16), batch=st.integers(1, 5))
def test_jagged_batches_match_per_row_reference(lens: list[int], max_hist: int, seed: int, batch: int) -> None:
    """split_arrays + pad_histories (vectorised) == per-row truncation and padding, on random shapes."""
    rng = np.random.default_rng(seed)
    hists = [rng.integers(0, N, n).tolist() for n in lens]
    n = len(lens)
    frame = pl.DataFrame({"user_idx": rng.integers(0, U, n), "item_idx": rng.integers(0, N, n),
                          "label": rng.integers(0, 2, n), "hist_item_idx": hists},
                         schema_overrides={"hist_item_idx": pl.List(pl.Int32)})
    arrays = split_arrays(frame, max_hist=max_hist, n_items=N, n_users=U)
    kept = [h[-max_hist:] for h in hists]
    flat = [v for h in kept for v in h]
    offsets = np.cumsum([0, *map(len, kept)]).tolist()
    assert arrays.hist_values.tolist() == flat and arrays.hist_offsets.tolist() == offsets
    order = torch.from_numpy(rng.permutation(n))
    for start in range(0, n, batch):
        rows = order[start : start + batch]
        hist, hist_len = pad_histories(arrays.hist_values, arrays.hist_offsets, rows)
        assert hist.dtype == torch.int64
        assert hist.tolist() == pad_histories_reference(flat, offsets, rows.tolist())
        assert hist_len.tolist() == [len(kept[r]) for r in rows.tolist()]


def test_iter_batches_cover_every_row_once() -> None:
    fs = _features()
    arrays = split_arrays(_frame(), max_hist=5, n_items=N, n_users=U)
    batches = list(iter_batches(fs, arrays, 2, torch.Generator().manual_seed(0)))
    assert [b.labels.shape[0] for b in batches] == [2, 1]
    assert sorted(torch.cat([b.item_idx for b in batches]).tolist()) == [3, 4, 5]
    for b in batches:  # each batch's history width is its own longest row
        assert b.hist.shape[1] == max(1, int(b.hist_len.max()))
