"""Positive histories for the U2I source, as O(P) windows into the sorted positives (never a padded (P, T)
matrix at scale) or, for small data and tests, padded (P, T) arrays; numpy + polars only.

History convention (shared with the benchmark): the positives of the user with ts strictly before the
target's ts, ordered by (ts, item_idx), the latest `window` of them. Shapes: P positives, T = window, B rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from qarm.errors import QarmError

if TYPE_CHECKING:  # the windows need numpy only (qarm.pairs.two_tower runs where polars is absent)
    import polars as pl

PAD = -1


def sorted_positives(train_pos: pl.DataFrame) -> pl.DataFrame:
    """TRAIN positives sorted by (user_idx, ts, item_idx), with int64 columns."""
    import polars as pl

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

    def take_jagged(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """rows: (B,) int64 -> (values (n,) int64, offsets (B + 1,) int64): row b's history, chronological, is
        values[offsets[b]:offsets[b + 1]] (the entries of `take` that are not PAD, in the same order)."""
        start, end = self.start[rows], self.end[rows]
        lengths = np.maximum(end - start, 0)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        pos = np.repeat(start - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return self.items[pos].astype(np.int64), offsets

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


def history_rows(hist: np.ndarray | HistoryWindows, rows: np.ndarray) -> np.ndarray:
    """The (B, T) int64 histories of `rows: (B,)` from hist: a dense (P, T) int64 array or `HistoryWindows`."""
    return hist.take(rows) if isinstance(hist, HistoryWindows) else hist[rows]


def history_jagged(hist: np.ndarray | HistoryWindows, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The histories of `rows: (B,)` from hist, a dense (P, T) int64 array or `HistoryWindows`, without padding:
    (values (n,) int64, offsets (B + 1,) int64), row b's history values[offsets[b]:offsets[b + 1]], chronological
    (the non-PAD entries of `history_rows`, in order)."""
    if isinstance(hist, HistoryWindows):
        return hist.take_jagged(rows)
    h = hist[rows]
    keep = h != PAD
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=offsets[1:])
    return h[keep].astype(np.int64), offsets


def histories_reference(pos: pl.DataFrame, window: int) -> list[list[int]]:
    """Slow per-row history (same order and convention as `positive_histories`, without padding)."""
    rows = pos.rows()
    out = []
    for u, _, t in rows:
        before = sorted((tt, ii) for uu, ii, tt in rows if uu == u and tt < t)
        out.append([i for _, i in before[-window:]])
    return out
