"""User2Item pair source (QARM §3, anchors §1.3): train a two-tower retrieval model on TRAIN positives,
then for every positive (user, target) pick as trigger the item among the user's latest `window` (50)
positives before the target that is most similar to the target in the U2I item-embedding space.

History convention (shared with the benchmark): the positives of the user with ts strictly before the
target's ts, ordered by (ts, item_idx), the latest `window` of them. Trigger ties go to the most recent.

Two-tower model: the user tower mean-pools a user-side embedding of the history item ids and applies a
linear layer; the item tower is an item-id embedding; both L2-normalised; trained with an in-batch
sampled softmax (other targets of the batch are the negatives, duplicates of the target masked).

Shapes: P positives, T = window, B batch, d = U2IConfig.dim, N items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from qarm.errors import QarmError
from qarm.losses import info_nce
from qarm.pairs.config import U2IConfig

DEFAULT_U2I = U2IConfig()

PAD = -1


def sorted_positives(train_pos: pl.DataFrame) -> pl.DataFrame:
    """TRAIN positives sorted by (user_idx, ts, item_idx), with int64 columns."""
    missing = {"user_idx", "item_idx", "ts"} - set(train_pos.columns)
    if missing:
        raise QarmError(f"train_pos: missing columns {sorted(missing)}; expected user_idx, item_idx, ts")
    return train_pos.select(pl.col("user_idx", "item_idx", "ts").cast(pl.Int64)).sort(["user_idx", "ts", "item_idx"])


@dataclass(frozen=True, eq=False)
class HistoryWindows:
    """Every sorted positive's history as a window into the sorted item column, never a (P, T) matrix
    (at 10M interactions a padded (P, 50) int64 history is ~2 GB; this is 20 bytes a row):

        items   (P,) int32 item_idx of `sorted_positives(...)`, row order
        start   (P,) int64 first row of the window (the user's first positive, or end - window)
        end     (P,) int64 one past the last row: the first row of p's (user, ts) group (strictly before p)

    Row p's history is items[start[p]:end[p]], chronological, at most `window` long; `take` pads rows on demand.
    """

    items: np.ndarray
    start: np.ndarray
    end: np.ndarray
    window: int

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def take(self, rows: np.ndarray) -> np.ndarray:
        """rows: (B,) int64 -> (B, window) int64 item_idx, chronological, most recent last, left-padded with PAD."""
        cand = self.end[rows, None] - self.window + np.arange(self.window)[None, :]  # (B, T)
        valid = cand >= self.start[rows, None]
        return np.where(valid, self.items[np.clip(cand, 0, None)], PAD).astype(np.int64)

    def select(self, mask: np.ndarray) -> HistoryWindows:
        """The windows of the rows where mask: (P,) bool is True (same item column)."""
        return HistoryWindows(self.items, self.start[mask], self.end[mask], self.window)

    def nonempty(self) -> np.ndarray:
        """(P,) bool: rows with at least one history item."""
        return self.end > self.start


def positive_windows(pos: pl.DataFrame, window: int) -> HistoryWindows:
    """The history windows of every row of `sorted_positives(...)`: row p's history is the rows
    [max(user_start, g_p - window), g_p) where g_p is the first row of p's (user, ts) group. Vectorised, O(P)."""
    users = pos["user_idx"].to_numpy()
    ts = pos["ts"].to_numpy()
    n = len(users)
    idx = np.arange(n, dtype=np.int64)
    new_user = np.r_[True, users[1:] != users[:-1]] if n else np.zeros(0, bool)
    new_group = new_user | np.r_[True, ts[1:] != ts[:-1]] if n else np.zeros(0, bool)
    user_start = np.maximum.accumulate(np.where(new_user, idx, 0)) if n else idx
    group_start = np.maximum.accumulate(np.where(new_group, idx, 0)) if n else idx
    items = pos["item_idx"].to_numpy().astype(np.int32)
    return HistoryWindows(items, np.maximum(user_start, group_start - window), group_start, window)


def positive_histories(pos: pl.DataFrame, window: int) -> np.ndarray:
    """History of each row of `sorted_positives(...)`: (P, window) int64 item_idx, chronological,
    most recent last, left-padded with PAD (-1). The dense form of `positive_windows` (small data, tests)."""
    w = positive_windows(pos, window)
    return w.take(np.arange(len(w)))


def _rows(hist: np.ndarray | HistoryWindows, rows: np.ndarray) -> np.ndarray:
    """(B, T) int64 histories of `rows` from a dense (P, T) array or from windows."""
    return hist.take(rows) if isinstance(hist, HistoryWindows) else hist[rows]


def histories_reference(pos: pl.DataFrame, window: int) -> list[list[int]]:
    """Slow per-row history (same order and convention as `positive_histories`, without padding)."""
    rows = pos.rows()
    out = []
    for u, _, t in rows:
        before = sorted((tt, ii) for uu, ii, tt in rows if uu == u and tt < t)
        out.append([i for _, i in before[-window:]])
    return out


class TwoTower(nn.Module):
    """User tower: mean of history item embeddings -> linear; item tower: item embedding. Both (B, d)."""

    def __init__(self, n_items: int, dim: int) -> None:
        super().__init__()
        self.n_items = n_items
        self.item = nn.Embedding(n_items, dim)
        self.hist = nn.EmbeddingBag(n_items + 1, dim, mode="mean", padding_idx=n_items)
        self.user_proj = nn.Linear(dim, dim)
        nn.init.normal_(self.item.weight, std=0.1)
        nn.init.normal_(self.hist.weight, std=0.1)

    def user(self, hist: torch.Tensor) -> torch.Tensor:
        """hist: (B, T) int64 item_idx, PAD = -1 -> (B, d) normalised."""
        return F.normalize(self.user_proj(self.hist(torch.where(hist < 0, self.n_items, hist))), dim=-1)

    def items(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B,) int64 item_idx -> (B, d) normalised item-tower embeddings."""
        return F.normalize(self.item(ids), dim=-1)


def train_two_tower(
    hist: np.ndarray | HistoryWindows, targets: np.ndarray, n_items: int, config: U2IConfig, *, seed: int = 0
) -> tuple[np.ndarray, list[float]]:
    """Fit the two towers on rows with a non-empty history: hist (P, T) int64 item_idx (PAD -1) or the
    `HistoryWindows` of those rows (padded per batch), targets (P,).

    Returns (item embeddings (N, d) float32, L2-normalised; mean loss per epoch)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = TwoTower(n_items, config.dim)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    t_all = torch.from_numpy(targets)
    no_anchor = torch.full((config.batch_size,), PAD, dtype=torch.long)
    losses: list[float] = []
    for _ in range(config.epochs):
        order = rng.permutation(len(targets))
        total, steps = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            b = order[start : start + config.batch_size]
            if len(b) < 2:
                continue
            loss = info_nce(
                model.user(torch.from_numpy(_rows(hist, b))), model.items(t_all[b]), temperature=config.temperature,
                anchor_ids=no_anchor[: len(b)], positive_ids=t_all[b], symmetric=False, normalize=False,
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / max(steps, 1))
    with torch.no_grad():
        return model.items(torch.arange(n_items)).numpy().astype(np.float32), losses


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
        h, t = _rows(hist, np.arange(s, min(s + chunk, len(targets)))), targets[s : s + chunk]
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
    train_pos: pl.DataFrame, n_items: int, config: U2IConfig = DEFAULT_U2I, *, seed: int = 0
) -> tuple[pl.DataFrame, dict[str, object]]:
    """Train the two towers and mine U2I triggers: (frame of `u2i_triggers`, info with losses)."""
    pos = sorted_positives(train_pos)
    if len(pos) and (pos["item_idx"].min() < 0 or pos["item_idx"].max() >= n_items):
        raise QarmError(f"train_pos.item_idx must lie in [0, {n_items}); n_items={n_items}")
    hist = positive_windows(pos, config.window)
    has = hist.nonempty()
    emb, losses = train_two_tower(hist.select(has), pos["item_idx"].to_numpy()[has], n_items, config, seed=seed)
    triggers = u2i_triggers(pos, hist, emb)
    return triggers, {"u2i_train_rows": int(has.sum()), "u2i_loss_per_epoch": losses, "u2i_item_embeddings": emb}
