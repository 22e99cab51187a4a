"""Splitting item-side work over the ranks of a world, without qarm knowing how the ranks talk.

qarm never imports the benchmark's World, so a caller that runs several ranks hands a `Ranks`: this process's
rank, the world size and `gather`, a callable that returns [obj of rank 0, obj of rank 1, ...] on every rank
(the benchmark passes `World.gather_objects`). The default `Ranks()` is one process: nothing is split, nothing
is gathered. Imports neither torch nor torch.distributed.

Every split here is exact: a rank computes a part the one-process loop computes the same way (the same batches,
the same chunks, the same per-item seeds), and the parts are put back in the one-process order, so W ranks
return bit for bit what one process returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from qarm.errors import QarmError

T = TypeVar("T")


def part_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous part of n rows (`torch.tensor_split` sizes: they differ by <= 1)."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


@dataclass(frozen=True)
class Ranks:
    """rank in [0, size); gather(obj) -> [obj of rank 0, ..., obj of rank size-1] on every rank (a collective:
    every rank calls it, in the same order); None in a one-process world."""

    rank: int = 0
    size: int = 1
    gather: Callable[[Any], list[Any]] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.size:
            raise QarmError(f"Ranks: rank {self.rank} outside [0, size={self.size})")
        if self.size > 1 and self.gather is None:
            raise QarmError(f"Ranks: a world of {self.size} ranks needs a gather callable")

    def bounds(self, n: int) -> tuple[int, int]:
        """[start, stop) of this rank's contiguous part of n things."""
        return part_bounds(n, self.rank, self.size)

    def mine(self, things: Sequence[T]) -> Sequence[T]:
        """This rank's contiguous part of `things`."""
        lo, hi = self.bounds(len(things))
        return things[lo:hi]

    def all_parts(self, part: T) -> list[T]:
        """Every rank's `part`, in rank order (one process: [part])."""
        if self.size == 1:
            return [part]
        assert self.gather is not None
        parts = self.gather(part)
        assert len(parts) == self.size, f"gather returned {len(parts)} parts for {self.size} ranks"
        return parts


ONE_PROCESS = Ranks()


def gather_row_parts(out: np.ndarray, mine: Sequence[Sequence[int] | np.ndarray], ranks: Ranks) -> np.ndarray:
    """out: (N, ...) with this rank's rows filled (the row indices of `mine`, this rank's batches) -> (N, ...)
    with every rank's rows filled, on every rank. One process: `out` as it is."""
    if ranks.size == 1:
        return out
    rows = np.concatenate([np.asarray(b, dtype=np.int64) for b in mine]) if mine else np.zeros(0, np.int64)
    for their_rows, their_values in ranks.all_parts((rows, out[rows])):
        out[their_rows] = their_values
    return out
