"""The distributed World: this process's place among the ranks, and the control messages between them.

A World is an object handed to whoever needs it (the suite, the item-side runner, the stage cache, a cell's
training loop); nothing keeps one in a module global. `World()` is the one-process world: every collective is
then a no-op that returns its input, and torch is never imported. `benchmark.dist.launch.init_world` joins a
torch.distributed world and returns a World whose collectives travel over a gloo group (also under nccl, so
waiting for rank 0's item side never holds a GPU collective).

    world.rank / size / local_rank / is_main / active
    world.barrier()              every rank waits for all the others
    world.agree(value)           rank 0's value on every rank (a decision all ranks share)
    world.gather_objects(obj)    [obj of rank 0, obj of rank 1, ...] on every rank
    world.gather_to_main(obj)    [obj of rank 0, obj of rank 1, ...] on rank 0, None on the others
    world.gather_rows(rows, v, n) each rank's values of its rows -> the whole split in row order, on rank 0 only
    world.where                  what this rank is doing now (named in its failure message)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmark.core.errors import DataError


class World:
    """rank (global), size (ranks in all), local_rank (on this node); `group`: the torch.distributed process
    group of control messages (None: the default group, or no torch.distributed at all when size == 1)."""

    def __init__(self, rank: int = 0, size: int = 1, local_rank: int = 0, group: Any = None) -> None:
        if not 0 <= rank < size:
            raise ValueError(f"World: rank {rank} outside [0, {size})")
        self.rank, self.size, self.local_rank, self.group = rank, size, local_rank, group
        self.where = "the item side"

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Whether this process is one rank of a world of several."""
        return self.size > 1

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def agree(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (a decision all ranks must share, e.g. "this entry is cached")."""
        if not self.active:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """[obj of rank 0, obj of rank 1, ...] on every rank."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def gather_to_main(self, obj: Any) -> list[Any] | None:
        """[obj of rank 0, obj of rank 1, ...] on rank 0; None on the others (they send, and keep nothing)."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.size if self.is_main else None
        dist.gather_object(obj, out, dst=0, group=self.group)
        return out

    def gather_rows(self, rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray | None:
        """This rank's values (n_r,) of rows (n_r,) int64 -> every rank's, in row order, (n,), on rank 0: exactly
        what one process would hold (`reassemble_rows` checks each row comes once). None on the other ranks: only
        rank 0 assembles a split and computes its metrics (what the others need of them, they get by `agree`)."""
        parts = self.gather_to_main((np.asarray(rows), np.asarray(values)))
        return None if parts is None else reassemble_rows(parts, n)


def reassemble_rows(parts: Sequence[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """Per-rank (rows (n_r,) int64, values (n_r,)) -> values (n,) in row order. The parts must cover rows 0..n-1
    exactly once (uneven part sizes are fine); the result equals what one process would hold, bit for bit."""
    rows = np.concatenate([np.asarray(r, dtype=np.int64).ravel() for r, _ in parts]) if parts else np.zeros(0, np.int64)
    values = np.concatenate([np.asarray(v).ravel() for _, v in parts]) if parts else np.zeros(0)
    if rows.shape != values.shape:
        raise DataError(f"reassemble_rows: {rows.size} rows but {values.size} values")
    seen = np.bincount(rows, minlength=n) if rows.size and rows.min() >= 0 else np.zeros(n, np.int64)
    if rows.size != n or seen.size != n or (seen != 1).any():
        raise DataError(f"reassemble_rows: the parts must hold each of the {n} rows exactly once; got {rows.size} "
                        f"rows ({int((seen == 0).sum())} missing, {int((seen > 1).sum())} repeated)")
    out = np.empty(n, dtype=values.dtype)
    out[rows] = values
    return out
