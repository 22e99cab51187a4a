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

Shapes: B batch of pairs, d embedding dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
    """In-batch InfoNCE over B (anchor, positive) pairs; returns a scalar (mean over rows).

    anchors, positives: (B, d) float. With `normalize`, similarities are cosines.
    row i: loss_i = -log exp(s_ii / tau) / sum_j exp(s_ij / tau), j over unmasked columns.
    anchor_ids, positive_ids: optional (B,) item_idx; when given, in-batch duplicates are masked
    (see `duplicate_mask`). `symmetric` averages the anchor->positive and positive->anchor losses.
    anchor_log_q, positive_log_q: optional (B,) log sampling probability of each row's anchor / positive item
    (times a correction strength); subtracted from the logits of the column that item fills (positives are
    the columns of anchor->positive, anchors those of positive->anchor), see the module docstring.
    """
    if anchors.ndim != 2 or anchors.shape != positives.shape:
        raise QarmError(
            f"info_nce: anchors and positives must both be (B, d); got {tuple(anchors.shape)} "
            f"and {tuple(positives.shape)}"
        )
    if not temperature > 0:
        raise QarmError(f"info_nce: temperature must be > 0, got {temperature}")
    if normalize:
        anchors = F.normalize(anchors, dim=-1)
        positives = F.normalize(positives, dim=-1)
    for name, q in (("anchor_log_q", anchor_log_q), ("positive_log_q", positive_log_q)):
        if q is not None and q.shape != (len(anchors),):
            raise QarmError(f"info_nce: {name} must be (B,) = ({len(anchors)},), got {tuple(q.shape)}")
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
