"""SIM (Pi et al., CIKM 2020) with QARM's code-prefix hard search.

General Search Unit (GSU) picks K positions of the history (B, T):
- hard search (QARM §1.5 cross feature, anchors.md): the history items whose first p RQ codes equal
  the target's; when fewer than K match, the most recent non-matching items fill the rest. Among
  matches, the most recent K win. No public SIM implements an SID-prefix search (anchors.md §2.11).
- soft search: top-K by inner product between the target and history item representations.
Exact Search Unit (ESU): multi-head target attention over the K selected items, plus multi-head
target attention over the latest `recent` items (the short-term sequence), then an MLP head.

Variants without RQ codes (id_only, *_dense) have no prefix to match: `build_sim` falls back to
soft search for them (reported by `SIM.search`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from recsys_models.attention import MultiHeadTargetAttention
from recsys_models.errors import RecsysModelError
from recsys_models.features import FeatureSpec, RankBatch, history_mask
from recsys_models.item_encoder import (
    ContextEncoder,
    SequenceItemEncoder,
    gather_positions,
    latest_positions,
    mlp,
)


def hard_search(
    target_prefix: torch.Tensor, hist_prefix: torch.Tensor, hist_len: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Code-prefix GSU. target_prefix (B, p), hist_prefix (B, T, p), hist_len (B,) -> positions (B, K'), mask.

    K' = min(k, T). Order of the output: matches (most recent first), then non-matches (most recent first).
    """
    t = hist_prefix.shape[1]
    pos = torch.arange(t)[None, :]
    valid = history_mask(hist_len, t)
    match = (hist_prefix == target_prefix[:, None, :]).all(-1) & valid
    # One distinct integer key per valid position: matches rank above all non-matches, recency breaks ties.
    key = torch.where(valid, pos + match.long() * t, torch.full_like(pos, -1).expand_as(valid))
    top = key.topk(min(k, t), dim=1, sorted=True)
    mask = top.values >= 0
    return torch.where(mask, top.indices, 0), mask


def soft_search(
    query: torch.Tensor, keys: torch.Tensor, hist_len: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inner-product GSU. query (B, D), keys (B, T, D) -> positions (B, K') of the top K' = min(k, T), mask."""
    t = keys.shape[1]
    valid = history_mask(hist_len, t)
    scores = torch.einsum("bd,btd->bt", query, keys).masked_fill(~valid, float("-inf"))
    top = scores.topk(min(k, t), dim=1, sorted=True)
    mask = top.values > float("-inf")
    return torch.where(mask, top.indices, 0), mask


class SIM(nn.Module):
    """RankBatch -> logits (B,). MLP input: [context, target, long-term interest, short-term interest, dense]."""

    def __init__(
        self,
        items: SequenceItemEncoder,
        context: ContextEncoder,
        esu: MultiHeadTargetAttention,
        short: MultiHeadTargetAttention,
        head: nn.Module,
        *,
        search: Literal["hard", "soft"],
        prefix_codes: torch.Tensor | None,
        top_k: int = 50,
        recent: int = 10,
    ) -> None:
        super().__init__()
        if search == "hard" and prefix_codes is None:
            raise RecsysModelError("SIM: search='hard' needs prefix_codes (N, p) int64")
        self.items, self.context, self.esu, self.short, self.head = items, context, esu, short, head
        self.search = search
        self.prefix_codes: torch.Tensor | None
        self.register_buffer("prefix_codes", prefix_codes, persistent=False)
        self.top_k, self.recent = top_k, recent

    def select(self, batch: RankBatch, target: torch.Tensor, hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The GSU: positions (B, K) and mask of the history items passed to the ESU."""
        if self.search == "hard":
            assert self.prefix_codes is not None
            codes = self.prefix_codes
            return hard_search(codes[batch.item_idx], codes[batch.hist], batch.hist_len, self.top_k)
        # The GSU only ranks; SIM trains its ESU on the selected items, not through the selection.
        return soft_search(target.detach(), hist.detach(), batch.hist_len, self.top_k)

    def forward(self, batch: RankBatch) -> torch.Tensor:
        target, hist, _ = self.items(batch)
        positions, mask = self.select(batch, target, hist)
        long_term = self.esu(target, gather_positions(hist, positions), mask)
        recent_pos, recent_mask = latest_positions(batch.hist_len, min(self.recent, hist.shape[1]))
        short_term = self.short(target, gather_positions(hist, recent_pos), recent_mask)
        features = [self.context(batch), target, long_term, short_term, batch.dense]
        return self.head(torch.cat(features, dim=-1)).squeeze(-1)


def build_sim(
    spec: FeatureSpec,
    *,
    codes: torch.Tensor | None = None,
    content: torch.Tensor | None = None,
    search: Literal["hard", "soft"] = "hard",
    prefix_depth: int = 1,
    top_k: int = 50,
    recent: int = 10,
    heads: int = 2,
    mlp_hidden: tuple[int, ...] = (128, 64),
) -> SIM:
    """codes: (N, L) int64 RQ codes (needed for hard search); content: (N, d) float32 or None.

    Without codes (spec.rq_levels == 0) hard search falls back to soft search.
    """
    if search not in ("hard", "soft"):
        raise RecsysModelError(f"SIM search: expected 'hard' or 'soft', got {search!r}")
    if top_k <= 0 or recent <= 0 or heads <= 0:
        raise RecsysModelError(f"SIM: top_k, recent and heads must be > 0, got {top_k}, {recent}, {heads}")
    prefix = None
    if search == "hard" and spec.rq_levels > 0:
        if codes is None:
            raise RecsysModelError("build_sim: search='hard' with RQ features needs codes (N, L) int64")
        if not 1 <= prefix_depth <= codes.shape[1]:
            raise RecsysModelError(f"SIM prefix_depth: expected 1..{codes.shape[1]} (levels), got {prefix_depth}")
        prefix = codes[:, :prefix_depth].contiguous()
    effective = "hard" if prefix is not None else "soft"
    items = SequenceItemEncoder(spec, content)
    context = ContextEncoder(spec)
    head = mlp(context.dim + 3 * items.dim + spec.dense_in_features, mlp_hidden)
    return SIM(
        items, context, MultiHeadTargetAttention(items.dim, heads), MultiHeadTargetAttention(items.dim, heads), head,
        search=effective, prefix_codes=prefix, top_k=top_k, recent=recent,
    )
