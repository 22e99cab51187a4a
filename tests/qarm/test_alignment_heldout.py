"""Held-out pairs of alignment: the split by item keeps held-out items out of training, the split by pair has the
stated sizes, the references table is computed by hand on a tiny case, the content probe's settings."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from qarm.alignment import (
    AlignConfig,
    AlignReferences,
    PairRecall,
    ReferenceRow,
    describe_trained,
    probe_config,
    references,
    render_references,
    split_pairs,
)
from qarm.errors import QarmError


def random_pairs(n_items: int = 60, n_pairs: int = 400, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n_items, n_pairs), rng.integers(0, n_items, n_pairs)
    keep = a != b
    src = np.where(rng.random(n_pairs) < 0.5, "u2i", "i2i")
    return pl.DataFrame({"trigger_idx": np.minimum(a, b)[keep], "target_idx": np.maximum(a, b)[keep],
                         "source": src[keep]}).cast({"trigger_idx": pl.Int32, "target_idx": pl.Int32})


def test_split_by_item_keeps_held_out_items_out_of_training() -> None:
    pairs = random_pairs()
    cfg = AlignConfig(split="item", val_frac=0.1, test_frac=0.2)
    s = split_pairs(pairs, 60, cfg, seed=3)
    assert len(s.train) + len(s.val) + len(s.test) == len(pairs)  # no cap reached: every pair placed once
    train_items, val_seen = set(s.train.ravel()), set(s.val.ravel())
    test_items = set(s.test.ravel()) - train_items - val_seen  # in test pairs only
    val_items = val_seen - train_items  # (a test pair may join a test item and a validation item)
    # every held-out pair has an endpoint that never occurs in a training pair, as a cold item never does
    assert all(set(p) & test_items for p in map(tuple, s.test))
    assert all(set(p) & val_items for p in map(tuple, s.val))
    assert len(test_items) == round(0.2 * len(np.unique(pairs.select("trigger_idx", "target_idx").to_numpy())))
    assert set(s.test_source) <= {"u2i", "i2i"} and len(s.test_source) == len(s.test)
    again = split_pairs(pairs, 60, cfg, seed=3)
    assert np.array_equal(again.test, s.test) and np.array_equal(again.train, s.train)


def test_split_by_pair_sizes_and_cap() -> None:
    pairs = random_pairs()
    p = len(pairs)
    s = split_pairs(pairs, 60, AlignConfig(split="pair", val_frac=0.1, test_frac=0.2), seed=0)
    assert (len(s.val), len(s.test), len(s.train)) == (round(0.1 * p), round(0.2 * p), p - round(0.1 * p) - round(0.2 * p))
    capped = split_pairs(pairs, 60, AlignConfig(split="pair", val_frac=0.1, test_frac=0.2, max_val_pairs=7), seed=0)
    assert len(capped.val) == len(capped.test) == 7 and len(capped.train) == len(s.train)
    none = split_pairs(pairs, 60, AlignConfig(split="pair", val_frac=0.0, test_frac=0.0), seed=0)
    assert len(none.train) == p and len(none.val) == len(none.test) == 0


def test_split_by_item_needs_training_pairs() -> None:
    pairs = pl.DataFrame({"trigger_idx": [0, 0], "target_idx": [1, 2]}).cast(pl.Int32)
    with pytest.raises(QarmError, match="no training pair"):
        split_pairs(pairs, 3, AlignConfig(split="item", val_frac=0.4, test_frac=0.5), seed=0)


def test_config_rejects_bad_split_settings() -> None:
    with pytest.raises(QarmError, match="test_frac"):
        AlignConfig(val_frac=0.5, test_frac=0.5)
    with pytest.raises(QarmError, match="split"):
        AlignConfig(split="user")  # type: ignore[arg-type]
    with pytest.raises(QarmError, match="popularity_correction"):
        AlignConfig(popularity_correction=-1.0)


def test_references_by_hand() -> None:
    # 4 items on a circle: 0 and 1 close, 2 and 3 close, the two groups orthogonal.
    emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    rev = emb[[2, 3, 0, 1]].copy()  # swaps the groups: item 0 now sits with 3... see below
    pairs = np.array([[0, 1], [0, 2]])
    sources = np.array(["u2i", "i2i"])
    refs = references(pairs, sources, {"frozen": emb, "aligned": rev}, k=1, split="item",
                      popularity=np.array([0, 0, 5, 1]))
    fr, al = refs.row("frozen").recall, refs.row("aligned").recall  # type: ignore[union-attr]
    # frozen: 0->1 and 1->0 are each other's top-1 (hit, hit); 0->2: top-1 of 0 is 1 (miss); 2->0: top-1 of 2 is 3
    assert (fr.u2i, fr.i2i, fr.overall) == (1.0, 0.0, 0.5)
    # aligned rows: item 0 = [0,1], 1 = [0.1,0.9], 2 = [1,0], 3 = [0.9,0.1]: 0 and 1 still nearest each other,
    # 0->2: top-1 of 0 is 1 (miss); 2->0: top-1 of 2 is 3 (miss)
    assert (al.u2i, al.i2i, al.overall) == (1.0, 0.0, 0.5)
    pop = refs.row("popularity").recall  # type: ignore[union-attr]
    # every query ranks by count: 2 (5) > 3 (1) > 0 = 1 (0). 0->1: 2 above -> miss; 1->0: miss;
    # 0->2: top -> hit; 2->0: query 2 excluded, 3 above -> miss
    assert (pop.u2i, pop.i2i, pop.overall) == (0.0, 0.5, 0.25)
    assert (refs.n_pairs, refs.n_pairs_u2i, refs.n_pairs_i2i, refs.k, refs.split) == (2, 1, 1, 1, "item")
    assert [r.name for r in refs.rows] == ["frozen", "aligned", "popularity"]


def test_gap_closed_and_render() -> None:
    rows = tuple(ReferenceRow(n, n, PairRecall(v, v, None)) for n, v in
                 (("frozen", 0.02), ("aligned", 0.03), ("probe", 0.04)))
    refs = AlignReferences(k=10, split="item", n_pairs=9, n_pairs_u2i=9, n_pairs_i2i=0, rows=rows)
    assert refs.gap_closed() == pytest.approx(0.5)
    md = render_references(refs, "toy")
    assert "| aligned | 0.0300 | – | 0.0300 | – | 1.50 |" in md and "gap closed by alignment: 0.50" in md
    flat = AlignReferences(10, "item", 9, 9, 0, (rows[0], rows[1], ReferenceRow("probe", "p", PairRecall(0.01))))
    assert flat.gap_closed() is None and "the content is the limit" in render_references(flat)


def test_probe_config_and_wording() -> None:
    cfg = AlignConfig()
    probe = probe_config(cfg, epochs=4)
    assert (probe.layers, probe.epochs, probe.patience) == ("all", 4, 4)
    assert (probe.split, probe.val_frac, probe.test_frac, probe.lr) == (cfg.split, cfg.val_frac, cfg.test_frac, cfg.lr)
    assert describe_trained(cfg, short=True) == "aligned head"
    assert describe_trained(cfg) == "projection head over frozen encoder features"
    assert describe_trained(AlignConfig(trainable_layers=2), short=True) == "aligned encoder (top 2 blocks)"
    assert describe_trained(probe, short=True) == "aligned encoder (end to end)"


def _plain_hits(emb: np.ndarray, q: np.ndarray, t: np.ndarray, k: int) -> np.ndarray:
    """Per-query hits, one query at a time in float64 numpy: the definition (random tie-break in expectation)."""
    out = []
    for qi, ti in zip(q, t):
        s = emb.astype(np.float64) @ emb[qi].astype(np.float64)
        s[qi] = -np.inf
        better, tied = (s > s[ti]).sum(), (s == s[ti]).sum() - 1
        out.append(min(1.0, max(0.0, k - better) / (tied + 1)))
    return np.array(out)


def test_pair_recall_per_source_and_interval_match_a_plain_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    from qarm.alignment import heldout

    rng = np.random.default_rng(5)
    emb = np.round(rng.normal(size=(50, 4)), 1).astype(np.float32)  # rounded: ties occur
    pairs = rng.integers(0, 50, size=(120, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    src = np.where(rng.random(len(pairs)) < 0.4, "u2i", "i2i")
    q, t = np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])
    want = _plain_hits(emb, q, t, 5)
    monkeypatch.setattr(heldout, "MAX_SCORES", 7 * 50)  # 7 queries a chunk: the chunking is exercised
    got = heldout.pair_recall(emb, pairs, src, 5)
    per_pair = (want[: len(pairs)] + want[len(pairs) :]) / 2
    assert got.overall == pytest.approx(want.mean(), abs=1e-12)
    for s in ("u2i", "i2i"):
        assert got.by_source(s) == pytest.approx(per_pair[src == s].mean(), abs=1e-12)
    half = 1.96 * per_pair.std(ddof=1) / np.sqrt(len(pairs))
    assert got.overall_ci95 == pytest.approx((per_pair.mean() - half, per_pair.mean() + half), abs=1e-12)
    assert heldout.recall_at_k(emb, pairs[:, 0], pairs[:, 1], 5) == pytest.approx(want.mean(), abs=1e-12)
    assert heldout.pair_recall(emb, pairs[:1], src[:1], 5).overall_ci95 is None  # one pair: no interval


def test_references_table_shows_the_interval() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 3)).astype(np.float32)
    pairs = np.stack([np.arange(0, 20), np.arange(20, 40)], 1)
    refs = references(pairs, np.array(["u2i"] * 20), {"frozen": emb}, k=5)
    lo, hi = refs.rows[0].recall.overall_ci95
    assert lo < refs.rows[0].recall.overall < hi
    assert f"| [{lo:.4f}, {hi:.4f}] |" in render_references(refs)
