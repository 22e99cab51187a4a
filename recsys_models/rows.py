"""Row gathers with one gradient buffer, torch only (no TorchRec): what the item encoders and the fused attention
units share, importable where TorchRec is not installed (scripts/gpu_check.py's torch-only steps).

Shapes: U distinct rows, D width.
"""

from __future__ import annotations

import torch


class _GatherRows(torch.autograd.Function):
    """rows.index_select(0, idx) for several idx at once; backward scatters every piece's gradient into one
    zero (U, D) buffer (no concatenation of the pieces' gradients, as a split of one gather needs)."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, *indices: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        ctx.save_for_backward(*indices)
        ctx.shape = rows.shape
        return tuple(rows.index_select(0, idx) for idx in indices)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        indices = ctx.saved_tensors
        out = None
        for idx, g in zip(indices, grads):
            if g is None:
                continue
            if out is None:
                out = g.new_zeros(ctx.shape)
            g = g.reshape(len(idx), ctx.shape[1])
            out.scatter_add_(0, idx.unsqueeze(1).expand(-1, g.shape[1]), g)
        return (out, *([None] * len(indices)))


def gather_rows(rows: torch.Tensor, *indices: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """rows (U, D) and 1-D int64 indices -> rows[idx] (len(idx), D) for each, as one autograd call whose backward
    accumulates all their gradients in one (U, D) tensor."""
    return _GatherRows.apply(rows, *indices)
