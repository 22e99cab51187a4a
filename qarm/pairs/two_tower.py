"""The U2I two-tower retrieval model and its training (QARM §3's User2Item source), torch + numpy only.

The user tower mean-pools a user-side embedding of the history item ids and applies a linear layer; the item
tower is an item-id embedding; both L2-normalised; trained with an in-batch sampled softmax (the other targets
of the batch are the negatives, duplicates of the target masked), by Adam, or with `U2IConfig.optimizer =
"sparse_adam"` by SparseAdam's update (`RowSparseAdam`) on the rows of the item tables a batch touched (the
cost of a step then does not grow with the item count, only with the distinct rows a batch touches). The user
tower reads each batch's histories jagged (`user_jagged`): no padding entry is pooled or carried into a sparse
gradient. Mining the triggers (polars) is qarm.pairs.u2i. Shapes: P training rows, T history window, B batch,
d = U2IConfig.dim, N items, W ranks.

Under several ranks (`distributed`, the default torch.distributed group) the model trains under DDP with the
negatives gathered across ranks, the construction of qarm.alignment.distributed: every rank draws the same global
batch (same seeded permutation), runs both towers on its contiguous part of it, and all-gathers the parts with
their gradient (its `gather_rows`), so each rank's softmax sees the whole global batch as negatives and its loss
is the one-process loss of that batch. The gather's backward sums the W identical losses' gradients (W x the
one-process gradient of each part); DDP's mean over ranks divides by W: the parameter gradients are the
one-process ones, up to float summation order.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qarm.alignment.distributed import gather_rows, world, wrap_ddp
from qarm.errors import QarmError
from qarm.losses import info_nce
from qarm.pairs.config import U2IConfig
from qarm.pairs.history import PAD, HistoryWindows, history_jagged
from qarm.ranks import part_bounds


class TwoTower(nn.Module):
    """User tower: mean of history item embeddings -> linear; item tower: item embedding. Both (B, d)."""

    def __init__(self, n_items: int, dim: int, sparse: bool = False) -> None:
        super().__init__()
        self.n_items = n_items
        self.item = nn.Embedding(n_items, dim, sparse=sparse)
        self.hist = nn.EmbeddingBag(n_items + 1, dim, mode="mean", padding_idx=n_items, sparse=sparse)
        self.user_proj = nn.Linear(dim, dim)
        nn.init.normal_(self.item.weight, std=0.1)
        nn.init.normal_(self.hist.weight, std=0.1)

    def user(self, hist: torch.Tensor) -> torch.Tensor:
        """hist: (B, T) int64 item_idx, PAD = -1 -> (B, d) normalised (the padded form of `user_jagged`)."""
        return F.normalize(self.user_proj(self.hist(torch.where(hist < 0, self.n_items, hist))), dim=-1)

    def user_jagged(self, values: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """values (n,) int64 item_idx and offsets (B + 1,) int64, row b's history values[offsets[b]:offsets[b + 1]]
        -> (B, d) normalised: `user` without the padding, whose entries the bag would read, skip and (with
        sparse gradients) carry into the gradient's indices. An empty row pools to zeros, as an all-PAD row."""
        return F.normalize(self.user_proj(self.hist(values, offsets[:-1])), dim=-1)

    def items(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B,) int64 item_idx -> (B, d) normalised item-tower embeddings."""
        return F.normalize(self.item(ids), dim=-1)

    def forward(self, hist: torch.Tensor, ids: torch.Tensor,
                offsets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """hist: (B, T) padded histories, or with `offsets` (B + 1,) the jagged values (n,) of `user_jagged`;
        ids: (B,) targets -> (user (B, d), item (B, d)); the call DDP wraps."""
        user = self.user(hist) if offsets is None else self.user_jagged(hist, offsets)
        return user, self.items(ids)


class RowSparseAdam(torch.optim.SparseAdam):
    """torch.optim.SparseAdam's update ("lazy" Adam: only the rows a sparse gradient names move, their moments
    kept per row, the bias corrections from the parameter's step count), computed with row gathers and
    scatters on the coalesced gradient's rows instead of sparse-tensor arithmetic (`sparse_mask`, sparse
    `add_`), which re-derives the rows for each of its five sparse operations. The same operations in the same
    order: its parameters and moments equal SparseAdam's bit for bit (tests/qarm/test_pairs.py)."""

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        """One update of every parameter that has a (sparse) gradient; parameters without one are skipped."""
        if closure is not None:
            raise QarmError("RowSparseAdam.step takes no closure")
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise QarmError("RowSparseAdam needs sparse gradients (nn.Embedding(..., sparse=True))")
                state = self.state[p]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                grad = (-p.grad if group.get("maximize", False) else p.grad).coalesce()
                rows, g = grad._indices()[0], grad._values()
                if g.numel() == 0:
                    continue
                m_old, v_old = state["exp_avg"].index_select(0, rows), state["exp_avg_sq"].index_select(0, rows)
                # old += (1 - b) (new - old), in SparseAdam's order: update = (new - old)(1 - b); old + update
                numer = g.sub(m_old).mul_(1 - beta1).add_(m_old)
                v_new = g.pow(2).sub_(v_old).mul_(1 - beta2).add_(v_old)
                state["exp_avg"].index_copy_(0, rows, numer)
                state["exp_avg_sq"].index_copy_(0, rows, v_new)
                step = state["step"]
                step_size = float(group["lr"]) * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                p.index_add_(0, rows, numer.div_(v_new.sqrt_().add_(group["eps"])).mul_(-step_size))


class _Optimizers:
    """Several optimisers stepped as one (SparseAdam on the item tables, Adam on the rest)."""

    def __init__(self, *opts: torch.optim.Optimizer) -> None:
        self.opts = opts

    def zero_grad(self) -> None:
        for o in self.opts:
            o.zero_grad()

    def step(self) -> None:
        for o in self.opts:
            o.step()


def _optimizer(model: TwoTower, config: U2IConfig) -> torch.optim.Optimizer | _Optimizers:
    """Adam on every parameter, or (optimizer = "sparse_adam") SparseAdam's update (`RowSparseAdam`) on the two
    item tables' touched rows and Adam on the user projection (U2IConfig)."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    tables = [model.item.weight, model.hist.weight]
    return _Optimizers(RowSparseAdam(tables, lr=config.lr),
                       torch.optim.Adam(model.user_proj.parameters(), lr=config.lr))


def train_two_tower(
    hist: np.ndarray | HistoryWindows, targets: np.ndarray, n_items: int, config: U2IConfig, *, seed: int = 0,
    device: str | torch.device = "cpu", distributed: bool = False,
) -> tuple[np.ndarray, list[float]]:
    """Fit the two towers on rows with a non-empty history: hist (P, T) int64 item_idx (PAD -1) or the
    `HistoryWindows` of those rows (each batch's histories are taken jagged, without padding), targets (P,), on
    `device` (initialisation and batch order depend on `seed` only, not on the device). distributed: every rank of the default process group calls this
    with the same arguments; they train one model under DDP with the negatives gathered (module docstring) and
    every rank returns the same result.

    Returns (item embeddings (N, d) float32, L2-normalised; mean loss per epoch)."""
    sparse = config.optimizer == "sparse_adam"
    if sparse and distributed:
        raise QarmError("pairs.u2i.optimizer = 'sparse_adam' trains in one process; under several processes set "
                        "pairs.u2i.optimizer = 'adam'")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = torch.device(device)
    model = TwoTower(n_items, config.dim, sparse=sparse).to(device)
    trainer = wrap_ddp(model, device) if distributed else model
    rank, size = world() if distributed else (0, 1)
    opt = _optimizer(model, config)
    t_all = torch.from_numpy(targets).to(device)
    no_anchor = torch.full((config.batch_size,), PAD, dtype=torch.long, device=device)
    losses: list[float] = []
    for _ in range(config.epochs):
        order = rng.permutation(len(targets))
        total, steps = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            if len(rows) < 2:
                continue
            b = torch.from_numpy(rows).to(device)
            lo, hi = part_bounds(len(rows), rank, size)  # one process: the whole batch
            values, offsets = history_jagged(hist, rows[lo:hi])  # no padding: the bag reads real entries only
            users, items = trainer(torch.from_numpy(values).to(device), t_all[b[lo:hi]],
                                   torch.from_numpy(offsets).to(device))
            if size > 1:  # every rank's part, with its gradient: the global batch's negatives
                users, items = gather_rows(users, len(rows)), gather_rows(items, len(rows))
            loss = info_nce(
                users, items, temperature=config.temperature,
                anchor_ids=no_anchor[: len(b)], positive_ids=t_all[b], symmetric=False, normalize=False,
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / max(steps, 1))
    with torch.no_grad():
        return model.items(torch.arange(n_items, device=device)).cpu().numpy().astype(np.float32), losses
