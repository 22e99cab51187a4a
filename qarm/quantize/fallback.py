"""Which code rows a cold item can use: coverage of codes by the items seen in training, and the fallback that
sends rows never trained to one shared "unseen" id.

A ranker learns one embedding row per (level, code value) from the items with training impressions ("seen"
items). A cold item (no training impression) is scored through its code rows only, so a row that no seen item
uses was never trained: it is still its random initial vector, noise added to the cold item's score. Two
notions of "seen", by level l (0-based):

    row     the value codes[i, l] is used at level l by >= min_count seen items (what the per-level tables see)
    prefix  the prefix codes[i, :l+1] is shared by >= min_count seen items (the code's cell at depth l+1 holds
            trained items; implies row)

`fallback_to_seen_prefix` keeps an item's code down to its deepest seen prefix and replaces every deeper level
by the id K (one extra row per level, vocab K + 1) that all such items share: the code is truncated where the
item leaves the training distribution, and the shared row is one the ranker can learn (or zero-initialise).

Shapes: N items, L levels, K codebook size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from qarm.errors import QarmError

SeenBy = Literal["row", "prefix"]


@dataclass(frozen=True)
class CodeCoverage:
    """Of the `n_items` target items (e.g. the cold ones), the share whose code at each level is seen
    (row_seen[l]: its value at level l is used by a seen item; prefix_seen[l]: its prefix of depth l+1 is
    shared with a seen item), and the share whose whole code equals a seen item's (= prefix_seen[-1])."""

    n_items: int
    row_seen: tuple[float, ...]
    prefix_seen: tuple[float, ...]


def _check(codes: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, seen = np.asarray(codes), np.asarray(seen)
    if codes.ndim != 2 or seen.shape != (codes.shape[0],) or seen.dtype != bool:
        raise QarmError(f"codes must be (N, L) and seen (N,) bool; got {codes.shape} and {seen.shape} {seen.dtype}")
    if codes.size and codes.min() < 0:
        raise QarmError("codes must be >= 0")
    return codes.astype(np.int64), seen


def _prefix_ids(codes: np.ndarray) -> np.ndarray:
    """(N, L) int64: a dense id per distinct prefix codes[i, :l+1], level by level."""
    out = np.zeros(codes.shape, np.int64)
    prev = np.zeros(len(codes), np.int64)
    for lv in range(codes.shape[1]):
        _, out[:, lv] = np.unique(np.stack([prev, codes[:, lv]], 1), axis=0, return_inverse=True)
        prev = out[:, lv]
    return out


def seen_mask(codes: np.ndarray, seen: np.ndarray, by: SeenBy = "prefix", min_count: int = 1) -> np.ndarray:
    """(N, L) bool: whether item i's code at level l is seen in training (module docstring).
    codes: (N, L) int64 >= 0; seen: (N,) bool, the items with training impressions."""
    codes, seen = _check(codes, seen)
    if by not in ("row", "prefix") or min_count < 1:
        raise QarmError(f"seen_mask: by must be 'row' or 'prefix' and min_count >= 1; got {by!r}, {min_count}")
    ids = _prefix_ids(codes) if by == "prefix" else codes
    out = np.zeros(codes.shape, bool)
    for lv in range(codes.shape[1]):
        counts = np.bincount(ids[seen, lv], minlength=int(ids[:, lv].max(initial=-1)) + 1)
        out[:, lv] = counts[ids[:, lv]] >= min_count
    return out


def code_coverage(codes: np.ndarray, seen: np.ndarray, target: np.ndarray, min_count: int = 1) -> CodeCoverage:
    """Coverage of the `target` items' codes (target: (N,) bool, e.g. ~seen for the cold items)."""
    target = np.asarray(target, bool)
    row, pre = (seen_mask(codes, seen, by, min_count)[target] for by in ("row", "prefix"))
    n = int(target.sum())
    share = lambda m: tuple(float(x) for x in m.mean(0)) if n else tuple(0.0 for _ in range(codes.shape[1]))  # noqa: E731
    return CodeCoverage(n, share(row), share(pre))


def fallback_to_seen_prefix(codes: np.ndarray, seen: np.ndarray, codebook_size: int, *, by: SeenBy = "prefix",
                            min_count: int = 1) -> np.ndarray:
    """Truncate every item's code to its seen prefix: from the first level whose code is not seen in training
    (`seen_mask(codes, seen, by, min_count)`) on, every level gets the shared id `codebook_size` (K).

    codes: (N, L) int64 in [0, K); seen: (N,) bool. Returns (N, L) int64 in [0, K] (vocab K + 1). Seen items
    keep their codes unchanged when min_count = 1 (their own code is seen by themselves)."""
    codes, seen = _check(codes, seen)
    if codes.size and codes.max() >= codebook_size:
        raise QarmError(f"codes must lie in [0, codebook_size={codebook_size}); max is {int(codes.max())}")
    ok = np.logical_and.accumulate(seen_mask(codes, seen, by, min_count), axis=1)  # the prefix property
    return np.where(ok, codes, codebook_size)
