"""User2Item pair source (QARM §3, anchors §1.3): train a two-tower retrieval model on TRAIN positives,
then for every positive (user, target) pick as trigger the item among the user's latest `window` (50)
positives before the target that is most similar to the target in the U2I item-embedding space.

History convention (qarm.pairs.history, shared with the benchmark): the positives of the user with ts
strictly before the target's ts, ordered by (ts, item_idx), the latest `window` of them, held as O(P) windows
into the sorted positives. Trigger ties go to the most recent.

Two-tower model (qarm.pairs.two_tower, torch only): the user tower mean-pools a user-side embedding of the
history item ids and applies a linear layer; the item tower is an item-id embedding; both L2-normalised;
trained with an in-batch sampled softmax (other targets of the batch are the negatives, duplicates of the
target masked).

Shapes: P positives, T = window, B batch, d = U2IConfig.dim, N items.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from qarm.errors import QarmError
from qarm.pairs.config import U2IConfig
from qarm.pairs.history import (
    PAD,
    HistoryWindows,
    histories_reference,
    history_rows,
    positive_histories,
    positive_windows,
    sorted_positives,
)
from qarm.pairs.two_tower import TwoTower, train_two_tower

__all__ = ["PAD", "HistoryWindows", "TwoTower", "histories_reference", "mine_u2i", "positive_histories",
           "positive_windows", "sorted_positives", "train_two_tower", "u2i_triggers", "u2i_triggers_reference"]

DEFAULT_U2I = U2IConfig()


def u2i_triggers(pos: pl.DataFrame, hist: np.ndarray | HistoryWindows, item_emb: np.ndarray,
                 chunk: int = 4096) -> pl.DataFrame:
    """QARM §3: trigger = the history item most similar (cosine) to the target; ties -> most recent.

    pos: sorted positives (P rows); hist: (P, T) from `positive_histories`, or `positive_windows` (padded per
    chunk); item_emb: (N, d).
    History entries equal to the target are skipped. Returns (user_idx, trigger_idx, target_idx, ts,
    weight = cosine) for rows with at least one candidate."""
    emb = item_emb / np.maximum(np.linalg.norm(item_emb, axis=1, keepdims=True), 1e-12)
    targets = pos["item_idx"].to_numpy()
    trig = np.full(len(targets), PAD, dtype=np.int64)
    cos = np.zeros(len(targets), dtype=np.float32)
    for s in range(0, len(targets), chunk):
        h, t = history_rows(hist, np.arange(s, min(s + chunk, len(targets)))), targets[s : s + chunk]
        sim = np.einsum("ptd,pd->pt", emb[np.clip(h, 0, None)], emb[t])
        sim = np.where((h >= 0) & (h != t[:, None]), sim, -np.inf)[:, ::-1]  # reversed: ties -> most recent
        best = sim.argmax(axis=1)
        ok = np.isfinite(sim[np.arange(len(t)), best])
        trig[s : s + chunk] = np.where(ok, h[:, ::-1][np.arange(len(t)), best], PAD)
        cos[s : s + chunk] = np.where(ok, sim[np.arange(len(t)), best], 0.0)
    return (
        pos.with_columns(trigger_idx=pl.Series(trig), weight=pl.Series(cos))
        .filter(pl.col("trigger_idx") >= 0)
        .select("user_idx", "trigger_idx", pl.col("item_idx").alias("target_idx"), "ts", "weight")
    )


def u2i_triggers_reference(pos: pl.DataFrame, window: int, item_emb: np.ndarray) -> list[tuple[int, int, int] | None]:
    """Slow twin of `u2i_triggers`: per sorted row, (user, trigger, target) or None. item_emb: (N, d)."""
    emb = item_emb / np.maximum(np.linalg.norm(item_emb, axis=1, keepdims=True), 1e-12)
    out: list[tuple[int, int, int] | None] = []
    for (u, t, _), h in zip(pos.rows(), histories_reference(pos, window)):
        best, best_s = None, -np.inf
        for i in h:  # chronological; >= lets the most recent win ties
            sc = float(emb[i] @ emb[t])
            if i != t and sc >= best_s:
                best, best_s = i, sc
        out.append(None if best is None else (u, best, t))
    return out


def mine_u2i(
    train_pos: pl.DataFrame, n_items: int, config: U2IConfig = DEFAULT_U2I, *, seed: int = 0, device: str = "cpu",
    distributed: bool = False,
) -> tuple[pl.DataFrame, dict[str, object]]:
    """Train the two towers (on `device`; under DDP across the ranks of the default process group when
    `distributed`, see qarm.pairs.two_tower) and mine U2I triggers: (frame of `u2i_triggers`, info with losses)."""
    pos = sorted_positives(train_pos)
    if len(pos) and (pos["item_idx"].min() < 0 or pos["item_idx"].max() >= n_items):
        raise QarmError(f"train_pos.item_idx must lie in [0, {n_items}); n_items={n_items}")
    hist = positive_windows(pos, config.window)
    has = hist.nonempty()
    emb, losses = train_two_tower(hist.select(has), pos["item_idx"].to_numpy()[has], n_items, config, seed=seed,
                                  device=device, distributed=distributed)
    triggers = u2i_triggers(pos, hist, emb)
    return triggers, {"u2i_train_rows": int(has.sum()), "u2i_loss_per_epoch": losses, "u2i_item_embeddings": emb}
