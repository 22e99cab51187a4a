"""Target attention blocks: the DIN activation unit and multi-head target attention (SIM's ESU).

Shapes: query (B, D), keys (B, T, D), mask (B, T) bool (True = a real history item) -> (B, D).
A row whose mask is all False attends to nothing and returns zeros (an empty history).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from recsys_models.rows import gather_rows

if TYPE_CHECKING:
    from recsys_models.item_encoder import Selection

# History positions per chunk of `JaggedDinPool` (see there).
JAGGED_CHUNK = 4096


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of scores (..., T) over the last dim restricted to mask (..., T) bool; all-masked rows give
    all-zero weights (not NaN)."""
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(weights, nan=0.0) * mask


class DinAttention(nn.Module):
    """DIN's local activation unit (Zhou et al., KDD 2018, §4.3): an MLP scores [q, k, q - k, q * k].

    DIN keeps the raw scores (no softmax) "to reserve the intensity of user interests"; `softmax=True`
    normalises them instead (FuxiCTR's `attention_softmax` option). The first layer is evaluated as
    q (Wq + Wd)^T + k (Wk - Wd)^T + (q * k) Wp^T, the same linear map as W [q, k, q - k, q * k] with the
    q term computed once per row instead of once per history position (`scores_reference` is the
    literal concatenation).
    """

    def __init__(self, dim: int, hidden: tuple[int, ...] = (64,), softmax: bool = False) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("DinAttention: hidden needs at least one layer")
        self.first = nn.Linear(4 * dim, hidden[0])
        layers: list[nn.Module] = [nn.PReLU()]
        width = hidden[0]
        for h in hidden[1:]:
            layers += [nn.Linear(width, h), nn.PReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.rest = nn.Sequential(*layers)
        self.softmax = softmax
        self.dim = dim

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """query (B, D), keys (B, T, D) -> unnormalised scores (B, T)."""
        wq, wk, wd, wp = self.first.weight.split(self.dim, dim=1)
        per_row = query @ (wq + wd).T + self.first.bias  # (B, H)
        # k (Wk - Wd)^T + (q * k) Wp^T = k M_b with the per-row matrix M_b = (Wk - Wd)^T + diag(q) Wp^T.
        m = (wk - wd).T.unsqueeze(0) + query.unsqueeze(-1) * wp.T.unsqueeze(0)  # (B, D, H)
        hidden = torch.baddbmm(per_row.unsqueeze(1), keys, m)  # (B, T, H)
        return self.rest(hidden).squeeze(-1)

    def scores_reference(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """The literal W [q, k, q - k, q * k] scores: query (B, D), keys (B, T, D) -> (B, T)."""
        q = query.unsqueeze(1).expand_as(keys)
        return self.rest(self.first(torch.cat([q, keys, q - keys, q * keys], dim=-1))).squeeze(-1)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Padded form (the reference of `forward_jagged`): query (B, D), keys (B, T, D), mask (B, T) -> (B, D)."""
        scores = self.scores(query, keys)
        weights = masked_softmax(scores, mask) if self.softmax else scores * mask
        return torch.bmm(weights.unsqueeze(1), keys).squeeze(1)

    def fused(self) -> bool:
        """Whether `forward_jagged` takes the one-call path (`JaggedDinPool`): one hidden layer with a
        single-slope PReLU, raw scores (no softmax)."""
        rest = list(self.rest)
        return (not self.softmax and len(rest) == 2 and isinstance(rest[0], nn.PReLU)
                and rest[0].weight.numel() == 1 and isinstance(rest[1], nn.Linear))

    def forward_jagged(self, items: torch.Tensor, target: torch.Tensor, sel: Selection,
                       chunk: int = JAGGED_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward` over the selected history items only: items (U, D), the batch's distinct items; target (B,)
        int64, each row's query among them; sel: each row's keys among them -> (query, pooled), both (B, D):
        query = items[target] and pooled = `forward_jagged_autograd(query, items, sel)`. The query is returned
        because the caller needs it too: the gradients of both gathers land in one (U, D) tensor.

        Padding slots cost nothing. With one hidden layer and raw scores (the default) the whole unit is one
        autograd call with a hand-written backward (`JaggedDinPool`, the same sums as `forward_jagged_autograd`,
        `chunk` history positions at a time); otherwise `forward_jagged_autograd`."""
        if not self.fused():
            query, keys = gather_rows(items, target, sel.item)
            return query, self.forward_jagged_autograd(query, items, sel, keys)
        prelu, out = self.rest[0], self.rest[1]
        return JaggedDinPool.apply(items, target, sel.item, self.first.weight, self.first.bias, prelu.weight,
                                   out.weight, out.bias, sel.offsets, chunk)

    def forward_jagged_autograd(self, query: torch.Tensor, items: torch.Tensor, sel: Selection,
                                keys: torch.Tensor | None = None) -> torch.Tensor:
        """`forward_jagged` through autograd, for any activation unit (the reference of `JaggedDinPool`): the
        key-only term k (Wk - Wd)^T is computed once per distinct item, not once per history position; only
        (q * k) Wp^T is per position, as one (n, D) x (D, H) GEMM."""
        wq, wk, wd, wp = self.first.weight.split(self.dim, dim=1)
        per_row = torch.addmm(self.first.bias, query, (wq + wd).T)  # (B, H)
        # index_select, not x[idx]: its backward is an index_add, far cheaper on CPU than index_put(accumulate).
        if keys is None:
            keys = items.index_select(0, sel.item)  # (n, D)
        per_item = (items @ (wk - wd).T).index_select(0, sel.item)  # (n, H)
        hidden = torch.addmm(per_row.index_select(0, sel.row) + per_item, query.index_select(0, sel.row) * keys,
                             wp.T)  # (n, H)
        scores = self.rest(hidden)  # (n, 1)
        if self.softmax:  # a softmax per row: over the padded (B, K) scores, then back to the jagged rows
            padded = torch.ops.fbgemm.jagged_to_padded_dense(scores, [sel.offsets], [sel.width], float("-inf"))
            mask = torch.arange(sel.width, device=query.device)[None, :] < sel.lengths[:, None]
            scores = masked_softmax(padded.squeeze(-1), mask)[mask].unsqueeze(-1)
        # sum_n w_n k_n per row without materialising the (n, D) products (nor, backward, their gradient)
        return F.embedding_bag(sel.item, items, sel.offsets[:-1], mode="sum", per_sample_weights=scores.squeeze(-1))


def _chunks(offsets: torch.Tensor, chunk: int) -> list[tuple[int, int, int, int]]:
    """offsets (B + 1,) int64 of a jagged array -> (first row, end row, first position, end position) of each run of
    whole rows holding about `chunk` positions (a row longer than `chunk` is a chunk of its own; no empty chunk
    unless there are no positions at all)."""
    b, n = offsets.numel() - 1, int(offsets[-1])
    if n <= chunk:
        return [(0, b, 0, n)]
    cut = torch.searchsorted(offsets, torch.arange(chunk, n, chunk, device=offsets.device))  # first row at or past
    rows = torch.unique_consecutive(torch.cat([cut.new_zeros(1), cut, cut.new_full((1,), b)]))
    r, p = rows.tolist(), offsets[rows].tolist()
    return list(zip(r, r[1:], p, p[1:]))


class JaggedDinPool(torch.autograd.Function):
    """DIN's activation unit with one hidden layer (PReLU, one slope) and raw scores, then the weighted sum of
    each row's keys, in one call with a hand-written backward.

    items (U, D), the batch's distinct items; target (B,) and item (n,) int64, each row's query and each history
    position's key among them (rows in order); weight (H, 4 D) and bias (H,) of the first layer, slope (1,) of
    the PReLU, out_weight (1, H) and out_bias (1,) of the score layer; offsets (B + 1,) int64, row b's positions
    are [offsets[b], offsets[b + 1]) -> query = items[target] (B, D) and (B, D) sum_n s_n k_n per row, where
    k_n = items[item_n] and s_n = out(prelu(W [q, k_n, q - k_n, q * k_n] + b)).

    The history positions are taken `chunk` at a time (whole rows; ~4096 at perf rank's shape, measured), so the
    per-position tensors of a chunk ((chunk, D) keys, q * k and their gradients, (chunk, H) activations) stay
    in cache between the dozen passes made over them, instead of each pass streaming an (n, D) or (n, H) tensor
    from memory. Only the hidden layer (one (m, H) tensor per chunk: one (n, H) buffer would come fresh from the
    allocator, page faults and all) and the scores (n, 1) are kept for backward; the keys are gathered again and
    q * k and the PReLU recomputed, chunk by chunk. The keys are never materialised whole: each
    chunk's gradient is added into the (U, D) gradient of items, with the query's. Fewer passes than autograd's
    op-by-op backward besides: no sorting EmbeddingBag backward, no slow PReLU-backward kernel (torch's CPU
    `_prelu_kernel_backward` is ~10x an elementwise pass).
    """

    @staticmethod
    def forward(ctx, items: torch.Tensor, target: torch.Tensor, item: torch.Tensor,  # type: ignore[override]
                weight: torch.Tensor, bias: torch.Tensor, slope: torch.Tensor, out_weight: torch.Tensor,
                out_bias: torch.Tensor, offsets: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        d = items.shape[1]
        wq, wk, wd, wp = weight.split(d, dim=1)
        wkd_t, wp_t = (wk - wd).T, wp.T
        query = items.index_select(0, target)
        per_row = torch.addmm(bias, query, (wq + wd).T)  # (B, H): the query terms, once per row
        chunks = _chunks(offsets, chunk)
        lengths = offsets.diff()
        local = offsets[:-1].clone()  # each row's first position within its chunk
        hidden = []  # (m, H) per chunk: chunk-sized, so their memory comes back warm from the allocator
        scores = items.new_empty(item.numel(), 1)
        pooled = items.new_empty(query.shape)
        positions = torch.arange(max(p1 - p0 for _, _, p0, p1 in chunks), device=items.device)
        for r0, r1, p0, p1 in chunks:
            m = p1 - p0
            keys = items.index_select(0, item[p0:p1])  # (m, D)
            qk = query[r0:r1].repeat_interleave(lengths[r0:r1], dim=0, output_size=m).mul_(keys)
            h = torch.addmm(per_row[r0:r1].repeat_interleave(lengths[r0:r1], dim=0, output_size=m), keys,
                            wkd_t).addmm_(qk, wp_t)  # (m, H)
            hidden.append(h)
            s = torch.addmm(out_bias, F.prelu(h, slope), out_weight.T, out=scores[p0:p1])
            pooled[r0:r1] = F.embedding_bag(positions[:m], keys, local[r0:r1].sub_(p0), mode="sum",
                                            per_sample_weights=s.view(-1))
        ctx.save_for_backward(items, target, item, query, weight, slope, out_weight, offsets, local, scores, *hidden)
        ctx.chunks = chunks
        return query, pooled

    @staticmethod
    def backward(ctx, grad_query: torch.Tensor | None,  # type: ignore[override]
                 grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        items, target, item, query, weight, slope, out_weight, offsets, local, scores, *hidden = ctx.saved_tensors
        grad = grad.contiguous()
        d, h_dim = items.shape[1], weight.shape[0]
        wq, wk, wd, wp = weight.split(d, dim=1)
        wkd = wk - wd
        lengths = offsets.diff()
        grad_items = torch.zeros_like(items)
        grad_per_row = items.new_empty(query.shape[0], h_dim)  # (B, H): of per_row
        grad_q = items.new_empty(query.shape)  # (B, D): of query, through q * k
        grad_wkd, grad_wp = weight.new_zeros(h_dim, d), weight.new_zeros(h_dim, d)  # of wk - wd and of wp
        grad_out_bias = scores.new_zeros(1)
        # PReLU: prelu(h) = h + (slope - 1) min(h, 0), so with g_s the scores' gradient and A = g_s^T h, N =
        # g_s^T min(h, 0) (each (1, H)): out_weight's gradient is A + (slope - 1) N and the slope's is N . out_weight
        acc_h, acc_neg = out_weight.new_zeros(out_weight.shape), out_weight.new_zeros(out_weight.shape)
        positions = torch.arange(max(p1 - p0 for _, _, p0, p1 in ctx.chunks), device=items.device)
        for (r0, r1, p0, p1), h in zip(ctx.chunks, hidden, strict=True):
            m, idx = p1 - p0, item[p0:p1]
            keys, s = items.index_select(0, idx), scores[p0:p1]
            q_rows = query[r0:r1].repeat_interleave(lengths[r0:r1], dim=0, output_size=m)  # (m, D)
            grad_rows = grad[r0:r1].repeat_interleave(lengths[r0:r1], dim=0, output_size=m)
            grad_keys = grad_rows * s  # (m, D): from the weighted sum
            grad_scores = grad_rows.mul_(keys).sum(-1, keepdim=True)  # (m, 1)
            grad_out_bias += grad_scores.sum(0)
            acc_h.addmm_(grad_scores.T, h)
            acc_neg.addmm_(grad_scores.T, h.clamp(max=0))
            # the gradient of prelu(h): (g_s out_weight) where h > 0, slope times it elsewhere
            grad_act = grad_scores * out_weight  # (m, H)
            grad_h = torch.lerp(torch.ops.aten.threshold_backward(grad_act, h, 0.0), grad_act, slope)
            grad_per_row[r0:r1] = F.embedding_bag(positions[:m], grad_h, local[r0:r1], mode="sum")
            qk = q_rows * keys
            grad_wkd.addmm_(grad_h.T, keys)
            grad_wp.addmm_(grad_h.T, qk)
            grad_qk = grad_h @ wp  # (m, D)
            grad_keys.addmm_(grad_h, wkd).addcmul_(grad_qk, q_rows)
            grad_q[r0:r1] = F.embedding_bag(positions[:m], grad_qk.mul_(keys), local[r0:r1], mode="sum")
            grad_items.index_add_(0, idx, grad_keys)
        grad_wqd = grad_per_row.T @ query  # (H, D): of wq + wd
        grad_q.addmm_(grad_per_row, wq + wd)
        if grad_query is not None:
            grad_q += grad_query
        grad_items.index_add_(0, target, grad_q)
        grad_weight = torch.cat([grad_wqd, grad_wkd, grad_wqd - grad_wkd, grad_wp], dim=1)
        grad_slope = (acc_neg * out_weight).sum().reshape(slope.shape)
        grad_out_weight = acc_h.add_(acc_neg * (slope - 1))
        return (grad_items, None, None, grad_weight, grad_per_row.sum(0), grad_slope, grad_out_weight,
                grad_out_bias, None, None)


class MultiHeadTargetAttention(nn.Module):
    """Scaled dot-product attention of one target query over a masked sequence, `heads` heads.

    SIM's Exact Search Unit (Pi et al., CIKM 2020, §4.2) uses multi-head target attention over the
    GSU-selected behaviours.  The inner width is heads * ceil(dim / heads), projected back to dim.
    """

    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = math.ceil(dim / heads)
        inner = heads * self.head_dim
        self.q = nn.Linear(dim, inner)
        self.k = nn.Linear(dim, inner)
        self.v = nn.Linear(dim, inner)
        self.out = nn.Linear(inner, dim)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`forward_autograd` with the attention core (scores, softmax, pooling) in one call with a hand-written
        backward (`TargetAttentionPool`): the same sums, without autograd's batched products of inner size
        `heads` (slow per-row GEMMs on CPU)."""
        b, _, d = keys.shape
        h, dh = self.heads, self.head_dim
        q = self.q(query).view(b, h, dh)
        q_keys = torch.einsum("bhe,hed->bhd", q, self.k.weight.view(h, dh, d))  # (B, H, D)
        q_bias = (q * self.k.bias.view(h, dh)).sum(-1)  # (B, H)
        pooled, total = TargetAttentionPool.apply(keys, q_keys, q_bias, mask, math.sqrt(dh))
        return self._project(pooled, total)

    def _project(self, pooled: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        """pooled (B, H, D) = sum_t w_t x_t per head and total (B, H, 1) = sum_t w_t -> the output (B, D)."""
        b, h, d = pooled.shape
        wv = self.v.weight.view(h, self.head_dim, d)
        heads = torch.einsum("bhd,hed->bhe", pooled, wv) + total * self.v.bias.view(h, self.head_dim)
        return self.out(heads.reshape(b, h * self.head_dim))

    def forward_autograd(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`forward` op by op through autograd (the reference of `TargetAttentionPool`)."""
        # Absorbed form of `forward_reference`: with one query per row, q_h . (Wk_h x + bk_h) =
        # (Wk_h^T q_h) . x + q_h . bk_h and sum_t w_t (Wv_h x_t + bv_h) = Wv_h (sum_t w_t x_t) + bv_h
        # (the weights sum to 1, or 0 for an empty row), so no key is ever projected: O(B T H D).
        b, _, d = keys.shape
        h, dh = self.heads, self.head_dim
        q = self.q(query).view(b, h, dh)
        q_keys = torch.einsum("bhe,hed->bhd", q, self.k.weight.view(h, dh, d))  # (B, H, D)
        q_bias = (q * self.k.bias.view(h, dh)).sum(-1)  # (B, H)
        scores = (torch.bmm(q_keys, keys.transpose(1, 2)) + q_bias.unsqueeze(-1)) / math.sqrt(dh)  # (B, H, T)
        weights = masked_softmax(scores, mask[:, None, :])
        return self._project(torch.bmm(weights, keys), weights.sum(-1, keepdim=True))

    def forward_reference(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Textbook multi-head attention: project every key and value, then attend."""
        b, t, _ = keys.shape
        q = self.q(query).view(b, self.heads, 1, self.head_dim)
        k = self.k(keys).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = self.v(keys).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)  # (B, H, 1, T)
        weights = masked_softmax(scores, mask[:, None, None, :])
        return self.out((weights @ v).reshape(b, self.heads * self.head_dim))


class TargetAttentionPool(torch.autograd.Function):
    """The core of `MultiHeadTargetAttention` with a hand-written backward: keys (B, T, D), q_keys (B, H, D),
    q_bias (B, H), mask (B, T) bool, norm -> pooled (B, H, D) = sum_t w_t k_t and total (B, H, 1) = sum_t w_t
    (1, or 0 for an empty row; no gradient), w = masked softmax over t of (q_keys . k_t + q_bias) / norm.

    Every product keeps the keys' rows as the long side (bmm(q_keys, keys^T), not bmm(keys, q_keys^T)), and the
    keys' gradient is one product of inner size 2 H ([w; dL/ds] against [dL/dpooled; q_keys]) instead of two
    of inner size H.
    """

    @staticmethod
    def forward(ctx, keys: torch.Tensor, q_keys: torch.Tensor, q_bias: torch.Tensor,  # type: ignore[override]
                mask: torch.Tensor, norm: float) -> tuple[torch.Tensor, torch.Tensor]:
        scores = (torch.bmm(q_keys, keys.transpose(1, 2)) + q_bias.unsqueeze(-1)) / norm  # (B, H, T)
        weights = masked_softmax(scores, mask[:, None, :])
        total = weights.sum(-1, keepdim=True)
        ctx.mark_non_differentiable(total)
        ctx.save_for_backward(keys, q_keys, weights)
        ctx.norm = norm
        return torch.bmm(weights, keys), total

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _total: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        keys, q_keys, weights = ctx.saved_tensors
        grad = grad.contiguous()
        grad_weights = torch.bmm(grad, keys.transpose(1, 2))  # (B, H, T)
        # softmax backward (masked slots have w = 0, so they get 0), then the division by norm
        grad_scores = weights * (grad_weights - (weights * grad_weights).sum(-1, keepdim=True)) / ctx.norm
        coef = torch.cat([weights, grad_scores], dim=1).transpose(1, 2).contiguous()  # (B, T, 2H)
        grad_keys = torch.bmm(coef, torch.cat([grad, q_keys], dim=1))  # (B, T, D)
        grad_q_keys = torch.bmm(grad_scores, keys)  # (B, H, D)
        return grad_keys, grad_q_keys, grad_scores.sum(-1), None, None
