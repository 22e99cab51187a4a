"""Alignment over several processes: DDP with the in-batch negatives gathered across ranks (torch only).

Every rank draws the same global batch of B pairs (same seeded permutation) and embeds only its contiguous part
(`part_bounds`); `gather_rows` all-gathers the parts WITH their gradient (`_AllGatherRows`, a small autograd
Function over dist.all_gather / dist.all_reduce; not the deprecated torch.distributed.nn all_gather), so each
rank's InfoNCE sees the whole global batch as its negatives and its loss equals the one-process loss of that
batch. Gradients: the backward sums the W ranks' (identical) losses' gradients into each part (all_reduce of the
whole gathered gradient, then this rank's rows: a reduce-scatter), W times the one-process gradient of those
rows; DDP's mean over ranks divides by W, so the parameter gradients are the one-process gradients too (open_clip
uses the same construction).
Inference (`embed_items`): each rank embeds a contiguous range of items and the ranges are gathered.

In one process (`distributed=False`) `pair_embeddings` embeds each distinct item of the batch once, as the
single-process trainer always did. Shapes: B pairs, d aligned dim, N items, W ranks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from qarm.ranks import part_bounds

__all__ = ["embed_items", "gather_rows", "pair_embeddings", "part_bounds", "world", "wrap_ddp"]


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """x: (n_r, d), this rank's part of n rows -> (n, d), all parts in rank order, differentiable. Parts of
    unequal size are padded to the largest for the collective and trimmed after."""
    rank, size = world()
    if size == 1:
        return x
    sizes = [b - a for a, b in (part_bounds(n, r, size) for r in range(size))]
    width = max(sizes)
    padded = nn.functional.pad(x, (0, 0, 0, width - x.shape[0]))
    gathered = _AllGatherRows.apply(padded)  # (size * width, d)
    return torch.cat([gathered[r * width : r * width + s] for r, s in enumerate(sizes)])


class _AllGatherRows(torch.autograd.Function):
    """(w, d) on each of the W ranks of the default group -> (W * w, d), rank r's rows at [r * w, (r + 1) * w).
    Backward: the W ranks' gradients of the whole (W * w, d) output are summed (one all_reduce) and each rank
    takes its own rows: a reduce-scatter, which gloo lacks. The default group is looked up at each call and
    kept nowhere, so destroy_process_group can free it (torch.distributed.nn.functional.all_gather, used before,
    kept it alive: its gloo threads outlived destroy_process_group, into the interpreter's exit)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        rank, size = world()
        x = x.contiguous()
        out = x.new_empty((size * x.shape[0], *x.shape[1:]))
        dist.all_gather([out[r * x.shape[0] : (r + 1) * x.shape[0]] for r in range(size)], x)
        ctx.rows = (rank * x.shape[0], (rank + 1) * x.shape[0])
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = grad.contiguous().clone()  # all_reduce works in place: never on autograd's own buffer
        dist.all_reduce(total)
        lo, hi = ctx.rows
        return total[lo:hi]


def pair_embeddings(model: nn.Module, a: torch.Tensor, b: torch.Tensor, *,
                    distributed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (B, d) of a global batch's anchors a (B,) and positives b (B,) item_idx. One process: each
    distinct item is embedded once. Distributed: this rank embeds its part of the pairs and the parts are
    gathered with their gradient, so every rank holds the global batch."""
    if not distributed:
        uniq, inv = torch.unique(torch.cat([a, b]), return_inverse=True)
        z = model(uniq)[inv]
        return z[: len(a)], z[len(a) :]
    rank, size = world()
    lo, hi = part_bounds(len(a), rank, size)
    z = model(torch.cat([a[lo:hi], b[lo:hi]]))
    return gather_rows(z[: hi - lo], len(a)), gather_rows(z[hi - lo :], len(a))


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around the trainable alignment model (parameters broadcast from rank 0)."""
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


@torch.no_grad()
def embed_items(embed: nn.Module, n_items: int, batch_size: int = 1024, *, distributed: bool = False) -> torch.Tensor:
    """(N, d) float32 CPU embeddings of items 0..N-1 by `embed` (item_idx (B,) -> (B, d)).
    Distributed: each rank embeds a contiguous range and every rank receives all of them."""
    rank, size = world() if distributed else (0, 1)
    lo, hi = part_bounds(n_items, rank, size)
    device = next(embed.parameters()).device
    parts = [embed(torch.arange(s, min(s + batch_size, hi), device=device)).float() for s in range(lo, hi, batch_size)]
    mine = torch.cat(parts) if parts else torch.zeros(0, _width(embed, device), device=device)
    return (gather_rows(mine, n_items) if size > 1 else mine).cpu()


def _width(embed: nn.Module, device: torch.device) -> int:
    """d, the output width (probed on item 0), for a rank whose range of items is empty."""
    return int(embed(torch.zeros(1, dtype=torch.long, device=device)).shape[1])
