"""Contrastive losses for item alignment.

QARM §3 (anchors §1.3): `L_align = Batch-Contrastive(M_trigger, M_target, B)`, an in-batch contrastive
loss whose negatives are the other items of the batch; written as InfoNCE with cosine similarity and a
temperature tau. The paper does not say whether it is symmetric nor how in-batch duplicates are handled
(anchors §1.10 item 2); we use the symmetric form (CLIP-style, trigger->target and target->trigger) and
mask a column out of a row's negatives when it holds the row's own positive item or its anchor item,
so a popular item appearing twice in a batch is never pushed away from itself.

Popularity (sampling-bias) correction, Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus
Item Recommendations" (RecSys 2019): in-batch negatives are drawn in proportion to how often an item occurs
in the pairs, so the plain loss learns s(i, j) ~ log p(j | i) - log q(j) (a PMI) and under-ranks popular
items against the full item set that held-out recall@k ranks over. Subtracting log q(j) from every logit of
column j (the positive's too) makes the in-batch softmax estimate the full softmax again.

Two implementations of one loss: `info_nce_reference` is its definition in plain autograd (dense (B, B) masks,
masked_fill, cross_entropy on a transposed view); `info_nce`, what training calls, computes the same value and
gradients (up to float rounding) with one working (B, B) matrix and no (B, B) bool matrix: per direction one GEMM,
the column correction, the few masked entries written by flat index (`duplicate_entries`, found by sorting ids), an
in-place row log-softmax, and the gradient's two GEMMs. Both directions are laid out as rows (the
positive->anchor logits are computed as their own GEMM), so every softmax runs along contiguous rows.

Shapes: B batch of pairs, d embedding dim, M masked entries. anchors, positives: (B, d) float;
anchor_ids, positive_ids: (B,) int64 item_idx; anchor_log_q, positive_log_q: (B,) float.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from qarm.errors import QarmError


def duplicate_mask(anchor_ids: torch.Tensor, positive_ids: torch.Tensor) -> torch.Tensor:
    """Mask of false negatives: (B, B) bool, True where column j must not act as a negative for row i.

    Column j (holding item `positive_ids[j]`) is masked for row i when j != i and that item is row i's
    own positive (`positive_ids[i]`) or row i's anchor (`anchor_ids[i]`).
    anchor_ids, positive_ids: (B,) int64 item_idx.
    """
    same_pos = positive_ids[None, :] == positive_ids[:, None]
    same_anchor = positive_ids[None, :] == anchor_ids[:, None]
    off_diag = ~torch.eye(len(anchor_ids), dtype=torch.bool, device=anchor_ids.device)
    return (same_pos | same_anchor) & off_diag


def duplicate_entries(anchor_ids: torch.Tensor, positive_ids: torch.Tensor) -> torch.Tensor:
    """(M,) int64 flat positions r * B + c of the (B, B) entries whose column c holds row r's positive or anchor
    item (positive_ids[c] == positive_ids[r] or == anchor_ids[r]), the diagonal included, an entry possibly twice:
    `duplicate_mask(anchor_ids, positive_ids)` is these entries off the diagonal. O(B log B + M), no (B, B) matrix.

    anchor_ids, positive_ids: (B,) item_idx. Row r asks twice, with positive_ids[r] and with anchor_ids[r]; a
    binary search on the sorted positive_ids gives each question's run of equal ids, written out one entry per match.
    """
    b = len(positive_ids)
    keys, order = torch.sort(positive_ids)
    queries = torch.cat([positive_ids, anchor_ids.to(keys.dtype)])  # (2B,): query q is row q mod B's
    lo = torch.searchsorted(keys, queries)
    counts = torch.searchsorted(keys, queries, right=True) - lo
    rows = torch.repeat_interleave(torch.arange(2 * b, device=keys.device) % b, counts)  # (M,)
    run_start = torch.cumsum(counts, 0) - counts  # where each query's matches begin among the M
    sorted_pos = torch.repeat_interleave(lo - run_start, counts).add_(torch.arange(len(rows), device=keys.device))
    return rows.mul_(b).add_(order[sorted_pos])


def info_nce(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    *,
    temperature: float = 0.07,
    anchor_ids: torch.Tensor | None = None,
    positive_ids: torch.Tensor | None = None,
    symmetric: bool = True,
    normalize: bool = True,
    anchor_log_q: torch.Tensor | None = None,
    positive_log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """In-batch InfoNCE over B (anchor, positive) pairs; returns a scalar (mean over rows): the loss of
    `info_nce_reference` (arguments, checks and errors the same), computed by the fused path of the module
    docstring. Gradients reach anchors, positives (through F.normalize, applied outside the fused part, when
    `normalize`) and anchor_log_q / positive_log_q when they require grad; not a second derivative.

    anchors, positives: (B, d) float. anchor_ids, positive_ids: optional (B,) item_idx. anchor_log_q,
    positive_log_q: optional (B,) float. Peak extra memory: one (B, B) matrix of anchors' dtype.
    """
    _check_inputs(anchors, positives, temperature, anchor_log_q, positive_log_q)
    if normalize:
        anchors = F.normalize(anchors, dim=-1)
        positives = F.normalize(positives, dim=-1)
    anchor_q = anchor_log_q.to(anchors.dtype) if anchor_log_q is not None and symmetric else None
    positive_q = positive_log_q.to(anchors.dtype) if positive_log_q is not None else None
    row_masked = col_masked = None
    if anchor_ids is not None and positive_ids is not None:
        row_masked = duplicate_entries(anchor_ids, positive_ids)
        col_masked = duplicate_entries(positive_ids, anchor_ids) if symmetric else None
    inputs = (anchors, positives, anchor_q, positive_q)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        return _FusedInfoNCE.apply(*inputs, temperature, row_masked, col_masked, symmetric)
    return _fused(*inputs, temperature, row_masked, col_masked, symmetric, (False,) * 4)[0]


class _FusedInfoNCE(torch.autograd.Function):
    """`_fused` as an autograd node. The forward computes the loss and, for the inputs that need it, the loss's
    gradient at once (the softmax it needs is at hand, and only one (B, B) matrix is then alive at a time);
    backward scales those by the incoming gradient. `once_differentiable`: no second derivative."""

    @staticmethod
    def forward(ctx, anchors: torch.Tensor, positives: torch.Tensor, anchor_q: torch.Tensor | None,  # type: ignore[override]
                positive_q: torch.Tensor | None, temperature: float, row_masked: torch.Tensor | None,
                col_masked: torch.Tensor | None, symmetric: bool) -> torch.Tensor:
        loss, grads = _fused(anchors, positives, anchor_q, positive_q, temperature, row_masked, col_masked,
                             symmetric, tuple(ctx.needs_input_grad[:4]))
        ctx.save_for_backward(*grads)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        return *(None if g is None else g * grad_loss for g in ctx.saved_tensors), None, None, None, None


def _fused(anchors: torch.Tensor, positives: torch.Tensor, anchor_q: torch.Tensor | None,
           positive_q: torch.Tensor | None, temperature: float, row_masked: torch.Tensor | None,
           col_masked: torch.Tensor | None, symmetric: bool, needs: tuple[bool, ...],
           ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """The loss, and d loss / d (anchors, positives, anchor_q, positive_q) where `needs` says so (None elsewhere).

    anchor->positive logits: scaled @ positives.T - positive_q[None, :] with scaled = anchors / tau (the
    temperature folded into the (B, d) factor); positive->anchor logits: positives @ scaled.T - anchor_q[None, :]
    (the reference's transposed matrix, computed as its own GEMM so that its softmax runs along rows too).
    The two directions take turns in one (B, B) buffer.
    """
    weight = (0.5 if symmetric else 1.0) / len(anchors)  # each direction's loss is a mean over B rows
    need_a, need_p, need_aq, need_pq = needs
    work = anchors.new_empty((len(anchors), len(anchors)))
    scaled = anchors / temperature
    nll, g_scaled, g_pos, g_pq = _direction(work, scaled, positives, positive_q, row_masked,
                                            (need_a, need_p, need_pq))
    g_aq = None
    if symmetric:
        nll_back, g_pos_back, g_scaled_back, g_aq = _direction(work, positives, scaled, anchor_q, col_masked,
                                                               (need_p, need_a, need_aq))
        nll = nll + nll_back
        g_scaled = _add(g_scaled, g_scaled_back)
        g_pos = _add(g_pos, g_pos_back)
    grads = [g_scaled, g_pos, g_aq, g_pq]
    scales = [weight / temperature, weight, weight, weight]
    return nll * weight, [None if g is None else g * s for g, s in zip(grads, scales)]


def _direction(work: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, bias: torch.Tensor | None,
               masked: torch.Tensor | None, needs: tuple[bool, bool, bool],
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """One direction in `work` (B, B): logits = rows @ cols.T - bias[None, :] (rows, cols: (B, d); bias: (B,)),
    the flat `masked` entries (M,) set to finfo.min as the reference's masked_fill does, then the summed row loss
    sum_r (lse_r - logits_rr) and, as `needs` says, its gradients wrt rows, cols and bias (un-averaged).
    d (sum of row losses) / d logits = softmax - I (0 at masked entries, whose softmax is exactly 0)."""
    torch.mm(rows, cols.T, out=work)
    if bias is not None:
        work.sub_(bias[None, :])
    diag = work.diagonal().clone()  # logits_rr
    if masked is not None:  # `duplicate_entries` lists the diagonal too: it is written back, never masked
        work.view(-1).index_fill_(0, masked, torch.finfo(work.dtype).min)
        work.diagonal().copy_(diag)
    # In place: the row kernel reads a whole row (max, sum of exp) before writing it back. A softmax rather than
    # a log-softmax then exp_: the gradient needs the probabilities, and torch's standalone exp_ (MKL VML on CPU)
    # is ~20x slower on very negative inputs (masked entries, far tails), where the softmax kernel's own exp is not.
    torch.ops.aten._softmax.out(work, 1, False, out=work)
    nll = -torch.log(work.diagonal())  # lse_r - logits_rr
    # A row whose p_rr underflowed (loss above ~87 in float32): lse_r = logit - log p at the row's largest p
    # (1 / the softmax's sum of exp), that logit recomputed from the factors.
    low = torch.nonzero(work.diagonal() < torch.finfo(work.dtype).tiny).squeeze(1)
    if len(low):
        top = work[low].argmax(1)
        top_logit = (rows[low] * cols[top]).sum(1) - (0.0 if bias is None else bias[top])
        nll[low] = top_logit - torch.log(work[low, top]) - diag[low]
    need_rows, need_cols, need_bias = needs
    if not (need_rows or need_cols or need_bias):
        return nll.sum(), None, None, None
    work.diagonal().sub_(1.0)
    g_rows = torch.mm(work, cols) if need_rows else None
    # work.T @ rows, written as (rows.T @ work).T: with the (B, B) operand untransposed MKL takes 25 ms, not 40
    # (B = 4096, d = 64, one thread)
    g_cols = torch.mm(rows.T, work).T if need_cols else None
    g_bias = -work.sum(0) if need_bias else None  # logits[:, c] = ... - bias[c]
    return nll.sum(), g_rows, g_cols, g_bias


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    return b if a is None else a if b is None else a + b


def _check_inputs(anchors: torch.Tensor, positives: torch.Tensor, temperature: float,
                  anchor_log_q: torch.Tensor | None, positive_log_q: torch.Tensor | None) -> None:
    if anchors.ndim != 2 or anchors.shape != positives.shape:
        raise QarmError(
            f"info_nce: anchors and positives must both be (B, d); got {tuple(anchors.shape)} "
            f"and {tuple(positives.shape)}"
        )
    if not temperature > 0:
        raise QarmError(f"info_nce: temperature must be > 0, got {temperature}")
    for name, q in (("anchor_log_q", anchor_log_q), ("positive_log_q", positive_log_q)):
        if q is not None and q.shape != (len(anchors),):
            raise QarmError(f"info_nce: {name} must be (B,) = ({len(anchors)},), got {tuple(q.shape)}")


def info_nce_reference(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    *,
    temperature: float = 0.07,
    anchor_ids: torch.Tensor | None = None,
    positive_ids: torch.Tensor | None = None,
    symmetric: bool = True,
    normalize: bool = True,
    anchor_log_q: torch.Tensor | None = None,
    positive_log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """In-batch InfoNCE over B (anchor, positive) pairs; returns a scalar (mean over rows). The definition of the
    loss, in plain autograd over dense (B, B) matrices: `info_nce` is its fast path, checked against it.

    anchors, positives: (B, d) float. With `normalize`, similarities are cosines.
    row i: loss_i = -log exp(s_ii / tau) / sum_j exp(s_ij / tau), j over unmasked columns.
    anchor_ids, positive_ids: optional (B,) item_idx; when given, in-batch duplicates are masked
    (see `duplicate_mask`). `symmetric` averages the anchor->positive and positive->anchor losses.
    anchor_log_q, positive_log_q: optional (B,) log sampling probability of each row's anchor / positive item
    (times a correction strength); subtracted from the logits of the column that item fills (positives are
    the columns of anchor->positive, anchors those of positive->anchor), see the module docstring.
    """
    _check_inputs(anchors, positives, temperature, anchor_log_q, positive_log_q)
    if normalize:
        anchors = F.normalize(anchors, dim=-1)
        positives = F.normalize(positives, dim=-1)
    logits = anchors @ positives.T / temperature  # (B, B): row = anchor, column = positive
    fwd, bwd = logits, logits.T
    if positive_log_q is not None:
        fwd = fwd - positive_log_q.to(logits.dtype)[None, :]
    if anchor_log_q is not None:
        bwd = bwd - anchor_log_q.to(logits.dtype)[None, :]
    target = torch.arange(len(logits), device=logits.device)
    if anchor_ids is not None and positive_ids is not None:
        neg_inf = torch.finfo(logits.dtype).min
        fwd = fwd.masked_fill(duplicate_mask(anchor_ids, positive_ids), neg_inf)
        bwd = bwd.masked_fill(duplicate_mask(positive_ids, anchor_ids), neg_inf)
    loss = F.cross_entropy(fwd, target)
    return (loss + F.cross_entropy(bwd, target)) / 2 if symmetric else loss
