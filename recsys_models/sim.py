"""SIM (Pi et al., CIKM 2020) with QARM's code-prefix hard search.

General Search Unit (GSU) picks K positions of the history (B, T):
- hard search (QARM §1.5 cross feature, anchors.md): the history items whose first p RQ codes equal
  the target's; when fewer than K match, the most recent non-matching items fill the rest. Among
  matches, the most recent K win. No public SIM implements an SID-prefix search (anchors.md §2.11).
- soft search: top-K by inner product between the target and history item representations.
Exact Search Unit (ESU): multi-head target attention over the K selected items, plus multi-head
target attention over the latest `recent` items (the short-term sequence), then an MLP head.

Which GSU a cell uses (and, for hard search, which code set it matches on) is decided by the caller
that builds the variant; `build_sim` never falls back from one to the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.fx
from torch import nn
from torch.profiler import record_function

from recsys_models.attention import MultiHeadTargetAttention
from recsys_models.config import SimConfig
from recsys_models.errors import RecsysModelError
from recsys_models.features import FeatureSpec, RankBatch, history_mask
from recsys_models.item_encoder import (
    ContextEncoder,
    SequenceItemEncoder,
    gather_positions,
    latest_positions,
    mlp,
)
from recsys_models.rows import gather_rows

DEFAULT_SIM = SimConfig()


def hard_search(
    target_prefix: torch.Tensor, hist_prefix: torch.Tensor, hist_len: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Code-prefix GSU. target_prefix (B, p), hist_prefix (B, T, p), hist_len (B,) -> positions (B, K'), mask.

    K' = min(k, T). Order of the output: matches (most recent first), then non-matches (most recent first).
    """
    t = hist_prefix.shape[1]
    pos = torch.arange(t, device=hist_len.device)[None, :]
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
    """Inner-product GSU. query (B, D), keys (B, T, D), hist_len (B,) -> positions (B, K') of the top
    K' = min(k, T), mask."""
    t = keys.shape[1]
    valid = history_mask(hist_len, t)
    scores = torch.einsum("bd,btd->bt", query, keys).masked_fill(~valid, float("-inf"))
    top = scores.topk(min(k, t), dim=1, sorted=True)
    mask = top.values > float("-inf")
    return torch.where(mask, top.indices, 0), mask


@dataclass(frozen=True)
class GsuConfig:
    """The search unit of one SIM: mode ("hard" = code-prefix match, "soft" = inner product), top_k history
    items kept, recent = length of the short-term sequence."""

    mode: Literal["hard", "soft"]
    top_k: int
    recent: int


class SIM(nn.Module):
    """RankBatch -> logits (B,). MLP input: [context, target, long-term interest, short-term interest, dense].
    prefix_codes: (N, p) int64, the code prefixes hard search matches on (None for soft search)."""

    def __init__(
        self,
        items: SequenceItemEncoder,
        context: ContextEncoder,
        esu: MultiHeadTargetAttention,
        short: MultiHeadTargetAttention,
        head: nn.Module,
        *,
        search: GsuConfig,
        prefix_codes: torch.Tensor | None,
    ) -> None:
        super().__init__()
        if search.mode == "hard" and prefix_codes is None:
            raise RecsysModelError("SIM: search='hard' needs prefix_codes (N, p) int64")
        self.items, self.context, self.esu, self.short, self.head = items, context, esu, short, head
        self.search = search.mode
        self.prefix_codes: torch.Tensor | None
        self.register_buffer("prefix_codes", prefix_codes, persistent=False)
        self.top_k, self.recent = search.top_k, search.recent

    def select(self, batch: RankBatch, rep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The GSU: from the distinct items rep (U, D_i), positions (B, K) and mask of the history items passed
        to the ESU."""
        if self.search == "hard":
            assert self.prefix_codes is not None
            codes = self.prefix_codes
            return hard_search(codes[batch.item_idx], codes[batch.hist], batch.hist_len, self.top_k)
        # The GSU only ranks; SIM trains its ESU on the selected items, not through the selection. Scores of the
        # real history items only (jagged), laid out as soft_search's (B, T) with -inf padding.
        assert batch.hist_pos is not None and batch.target_pos is not None
        t = batch.hist.shape[1]
        with torch.no_grad():
            target = rep.index_select(0, batch.target_pos)
            valid = history_mask(batch.hist_len, t)
            rows = valid.nonzero(as_tuple=True)[0]
            scores = (target.index_select(0, rows) * rep.index_select(0, batch.hist_pos[valid])).sum(-1)
            padded = torch.full(valid.shape, float("-inf"), dtype=scores.dtype, device=scores.device)
            top = padded.masked_scatter_(valid, scores).topk(min(self.top_k, t), dim=1, sorted=True)
            mask = top.values > float("-inf")
            return torch.where(mask, top.indices, 0), mask

    def forward(self, batch: RankBatch) -> torch.Tensor:
        # The table lookups first, straight from the batch's fields (what TorchRec's pipelines trace to start the
        # sharded tables' input distribution one batch ahead), then the rest in one call the tracer does not enter.
        rep = self.items.represent(batch)  # (U, D_i): every distinct item of the batch once
        context = self.context(batch)
        return sim_head(self, batch, rep, context)

    def select_reference(self, batch: RankBatch, target: torch.Tensor,
                         hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`select` on the padded history hist (B, T, D_i) with the target target (B, D_i) (soft search over every
        slot, padding masked)."""
        if self.search == "hard":
            return self.select(batch, hist)
        return soft_search(target.detach(), hist.detach(), batch.hist_len, self.top_k)

    def forward_reference(self, batch: RankBatch) -> torch.Tensor:
        """The padded computation `forward` replaces: the (B, T, D_i) history gathered, then re-gathered."""
        target, hist, _ = self.items(batch)
        with record_function("qarm.features"):
            positions, mask = self.select_reference(batch, target, hist)
            long_keys = gather_positions(hist, positions)
            recent_pos, recent_mask = latest_positions(batch.hist_len, min(self.recent, hist.shape[1]))
            short_keys = gather_positions(hist, recent_pos)
        with record_function("qarm.attention"):
            long_term = self.esu(target, long_keys, mask)
            short_term = self.short(target, short_keys, recent_mask)
        context = self.context(batch)
        with record_function("qarm.mlp"):
            return self.head(torch.cat([context, target, long_term, short_term, batch.dense], dim=-1)).squeeze(-1)


def sim_head(sim: SIM, batch: RankBatch, rep: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """SIM after its lookups: the distinct items' rows rep (U, D_i) and the context (B, F_c * D) -> logits (B,).
    Its shapes and search mode steer Python, so TorchRec's pipeline tracer records it as one call
    (`torch.fx.wrap`)."""
    assert batch.target_pos is not None and batch.hist_pos is not None
    with record_function("qarm.features"):
        positions, mask = sim.select(batch, rep.detach())
        recent_pos, recent_mask = latest_positions(batch.hist_len, min(sim.recent, batch.hist.shape[1]))
        # The target and the ESU's keys straight from the distinct items, their gradients scattered back into one
        # (U, D_i) tensor: the (B, T, D_i) history is never materialised.
        long_idx, short_idx = batch.hist_pos.gather(1, positions), batch.hist_pos.gather(1, recent_pos)
        target, long_keys, short_keys = gather_rows(rep, batch.target_pos, long_idx.reshape(-1),
                                                    short_idx.reshape(-1))
        long_keys = long_keys.view(*long_idx.shape, -1)  # (B, K, D_i)
        short_keys = short_keys.view(*short_idx.shape, -1)  # (B, recent, D_i)
    with record_function("qarm.attention"):
        long_term = sim.esu(target, long_keys, mask)
        short_term = sim.short(target, short_keys, recent_mask)
    with record_function("qarm.mlp"):
        return sim.head(torch.cat([context, target, long_term, short_term, batch.dense], dim=-1)).squeeze(-1)


torch.fx.wrap("sim_head")


def build_sim(spec: FeatureSpec, content: torch.Tensor | None = None, cfg: SimConfig = DEFAULT_SIM, *,
              search: Literal["hard", "soft"] | None = None, search_codes: torch.Tensor | None = None,
              device: torch.device | None = None) -> SIM:
    """SIM of the given spec. content: (N, d) float32 or None; search: the GSU, "hard" or "soft" (None:
    cfg.search); search_codes: (N, L_s) int64 codes the hard search matches on (their first `cfg.prefix_depth`
    levels), needed for hard search. device: where the embedding tables are allocated (`torch.device("meta")`
    defers them to DMP sharding).

    The caller decides the GSU (which search, over which code set) and records it; nothing falls back
    silently: hard search without search_codes is an error.
    """
    prefix = None
    mode = search or cfg.search
    if mode == "hard":
        if search_codes is None:
            raise RecsysModelError("build_sim: search='hard' needs search_codes (N, L) int64 to match prefixes on")
        if search_codes.ndim != 2 or search_codes.shape[0] != spec.n_items:
            raise RecsysModelError(f"build_sim: search_codes must be (N={spec.n_items}, L) int64, "
                                   f"got {tuple(search_codes.shape)}")
        if not 1 <= cfg.prefix_depth <= search_codes.shape[1]:
            raise RecsysModelError(f"SimConfig.prefix_depth: expected 1..{search_codes.shape[1]} (levels of the "
                                   f"search codes), got {cfg.prefix_depth}")
        prefix = search_codes[:, : cfg.prefix_depth].to(torch.int64).contiguous()
    items = SequenceItemEncoder(spec, content, device=device)
    context = ContextEncoder(spec, device=device)
    head = mlp(context.dim + 3 * items.dim + spec.dense_in_features, cfg.mlp)
    esu, short = MultiHeadTargetAttention(items.dim, cfg.heads), MultiHeadTargetAttention(items.dim, cfg.heads)
    return SIM(items, context, esu, short, head, search=GsuConfig(mode, cfg.top_k, cfg.recent), prefix_codes=prefix)
