"""The item side on two gloo processes against one (tests/benchmark/ranks_worker.py, spawned once): Swing by
item and held-out recall are exact; the U2I two towers under DDP with gathered negatives match one process to
float summation order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.dist import launch as distributed

WORKER = Path(__file__).with_name("ranks_worker.py")


def _worker_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ranks_worker", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


W = _worker_module()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("two_ranks_itemside")
    distributed.spawn(distributed.call_file, 2, str(WORKER), "main", str(out))
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_swing_by_item_on_two_ranks_equals_one(two_ranks: list[dict]) -> None:
    from qarm.pairs.swing import merge_swing_parts, swing_topk

    one = swing_topk(W.positives(), W.N_ITEMS, W.SWING, seed=3)
    for r, seen in enumerate(two_ranks):
        assert (seen["swing_part"]["item_idx"].to_numpy() % 2 == r).all()
        assert merge_swing_parts(seen["swing_parts"]).equals(one)


def test_heldout_recall_on_two_ranks_equals_one_exactly(two_ranks: list[dict]) -> None:
    from qarm.alignment.heldout import recall_at_k

    emb, a, b, bias = W.recall_data()
    one = [recall_at_k(emb, a, b, 5, chunk=9), recall_at_k(emb, a, b, 5, chunk=9, item_bias=bias)]
    assert two_ranks[0]["recall"] == one and two_ranks[1]["recall"] == one


def test_u2i_under_ddp_with_gathered_negatives_matches_one_process(two_ranks: list[dict]) -> None:
    """The first step's loss (the whole batch's softmax over the gathered negatives) to 1e-6; after 3 epochs of
    uneven batches (210 rows, 13 steps an epoch) the item embeddings to 1e-5: the ranks' gradients are summed in
    another order than one process sums them and Adam carries those ulps over 39 steps (measured: first loss
    equal, epoch losses 6e-8 apart, embeddings 4.5e-7 apart at most)."""
    from qarm.pairs.two_tower import train_two_tower

    hist, targets = W.u2i_rows()
    _, step = train_two_tower(hist, targets, W.N_ITEMS, W.U2I_STEP, seed=0)
    emb, losses = train_two_tower(hist, targets, W.N_ITEMS, W.U2I_RUN, seed=0)
    for seen in two_ranks:
        assert abs(seen["u2i_first_loss"] - step[0]) < 1e-6
        np.testing.assert_allclose(seen["u2i_losses"], losses, atol=1e-6)
        np.testing.assert_allclose(seen["u2i_embeddings"], emb, atol=1e-5)
    np.testing.assert_array_equal(two_ranks[0]["u2i_embeddings"], two_ranks[1]["u2i_embeddings"])


def test_mine_pairs_on_two_ranks(two_ranks: list[dict]) -> None:
    """Both ranks return the same pairs; the Swing ones (first in `sources`, so a pair both sources find stays
    Swing's) are the one-process ones exactly."""
    import polars as pl

    from qarm.pairs import mine_pairs

    one = mine_pairs(W.positives(), W.N_ITEMS, W.PAIRS, seed=3).pairs
    assert two_ranks[0]["pairs"].equals(two_ranks[1]["pairs"])
    i2i = pl.col("source") == "i2i"
    assert two_ranks[0]["pairs"].filter(i2i).equals(one.filter(i2i))


def test_item_side_stages_on_two_ranks(two_ranks: list[dict], tmp_path: Path) -> None:
    """synthetic-tiny's item side through the stage cache on 2 ranks: every rank holds the same artifacts; the
    frozen features (MiniLM, each rank one of the 2 batches) and the frozen held-out recall equal one process's
    exactly; the Swing pairs are the one-process ones."""
    import polars as pl

    one = W.item_side(tmp_path)
    a, b = two_ranks
    for m, x in one.frozen.features.items():
        assert np.array_equal(a["frozen"][m], x) and np.array_equal(b["frozen"][m], x)
    assert a["frozen_recall"] == one.align.summary.frozen_recall == b["frozen_recall"]
    assert a["side_pairs"].equals(b["side_pairs"]) and np.array_equal(a["aligned"], b["aligned"])
    assert a["val_recall"] == b["val_recall"]
    i2i = one.pairs.pairs.filter(pl.col("source") == "i2i")
    assert set(i2i.select("trigger_idx", "target_idx").rows()) <= set(a["side_pairs"].select("trigger_idx", "target_idx").rows())
