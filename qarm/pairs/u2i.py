"""User2Item pair source (QARM §3, anchors §1.3): train a two-tower retrieval model on TRAIN positives,
then for every positive (user, target) pick as trigger the item among the user's latest `window` (50)
positives before the target that is most similar to the target in the U2I item-embedding space.

History convention (shared with the benchmark): the positives of the user with ts strictly before the
target's ts, ordered by (ts, item_idx), the latest `window` of them. Trigger ties go to the most recent.

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
from qarm.pairs.two_tower import PAD, TwoTower, train_two_tower

__all__ = ["PAD", "TwoTower", "mine_u2i", "positive_histories", "sorted_positives", "train_two_tower",
           "u2i_triggers"]

DEFAULT_U2I = U2IConfig()


def sorted_positives(train_pos: pl.DataFrame) -> pl.DataFrame:
    """TRAIN positives sorted by (user_idx, ts, item_idx), with int64 columns."""
    missing = {"user_idx", "item_idx", "ts"} - set(train_pos.columns)
    if missing:
        raise QarmError(f"train_pos: missing columns {sorted(missing)}; expected user_idx, item_idx, ts")
    return train_pos.select(pl.col("user_idx", "item_idx", "ts").cast(pl.Int64)).sort(["user_idx", "ts", "item_idx"])


def positive_histories(pos: pl.DataFrame, window: int) -> np.ndarray:
    """History of each row of `sorted_positives(...)`: (P, window) int64 item_idx, chronological,
    most recent last, left-padded with PAD (-1). Vectorised: row p's history is the rows
    [max(user_start, g_p - window), g_p) where g_p is the first row of p's (user, ts) group."""
    users = pos["user_idx"].to_numpy()
    ts = pos["ts"].to_numpy()
    items = pos["item_idx"].to_numpy()
    n = len(users)
    idx = np.arange(n)
    new_user = np.r_[True, users[1:] != users[:-1]] if n else np.zeros(0, bool)
    new_group = new_user | np.r_[True, ts[1:] != ts[:-1]] if n else np.zeros(0, bool)
    user_start = np.maximum.accumulate(np.where(new_user, idx, 0)) if n else idx
    group_start = np.maximum.accumulate(np.where(new_group, idx, 0)) if n else idx
    cand = group_start[:, None] - window + np.arange(window)[None, :]  # (P, T)
    valid = cand >= user_start[:, None]
    return np.where(valid, items[np.clip(cand, 0, None)] if n else cand, PAD)


def histories_reference(pos: pl.DataFrame, window: int) -> list[list[int]]:
    """Slow per-row history (same order and convention as `positive_histories`, without padding)."""
    rows = pos.rows()
    out = []
    for u, _, t in rows:
        before = sorted((tt, ii) for uu, ii, tt in rows if uu == u and tt < t)
        out.append([i for _, i in before[-window:]])
    return out


def u2i_triggers(pos: pl.DataFrame, hist: np.ndarray, item_emb: np.ndarray, chunk: int = 4096) -> pl.DataFrame:
    """QARM §3: trigger = the history item most similar (cosine) to the target; ties -> most recent.

    pos: sorted positives (P rows); hist: (P, T) from `positive_histories`; item_emb: (N, d).
    History entries equal to the target are skipped. Returns (user_idx, trigger_idx, target_idx, ts,
    weight = cosine) for rows with at least one candidate."""
    emb = item_emb / np.maximum(np.linalg.norm(item_emb, axis=1, keepdims=True), 1e-12)
    targets = pos["item_idx"].to_numpy()
    trig = np.full(len(targets), PAD, dtype=np.int64)
    cos = np.zeros(len(targets), dtype=np.float32)
    for s in range(0, len(targets), chunk):
        h, t = hist[s : s + chunk], targets[s : s + chunk]
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
    train_pos: pl.DataFrame, n_items: int, config: U2IConfig = DEFAULT_U2I, *, seed: int = 0, device: str = "cpu"
) -> tuple[pl.DataFrame, dict[str, object]]:
    """Train the two towers (on `device`) and mine U2I triggers: (frame of `u2i_triggers`, info with losses)."""
    pos = sorted_positives(train_pos)
    if len(pos) and (pos["item_idx"].min() < 0 or pos["item_idx"].max() >= n_items):
        raise QarmError(f"train_pos.item_idx must lie in [0, {n_items}); n_items={n_items}")
    hist = positive_histories(pos, config.window)
    has = (hist >= 0).any(axis=1)
    emb, losses = train_two_tower(hist[has], pos["item_idx"].to_numpy()[has], n_items, config, seed=seed,
                                  device=device)
    triggers = u2i_triggers(pos, hist, emb)
    return triggers, {"u2i_train_rows": int(has.sum()), "u2i_loss_per_epoch": losses, "u2i_item_embeddings": emb}
