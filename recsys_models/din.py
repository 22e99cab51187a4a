"""DIN (Zhou et al., KDD 2018): DIN target attention over the latest T history items, then an MLP.

Item representations come from an EmbeddingBagCollection over the batch's distinct items (one pooled row per
item field), shared by target and history;
user-side features (user id and user features) are pooled (features.context_bag_configs) and fed to the MLP,
unless DinConfig.user_context is off (RecBole's DIN: user features are not input into its DNN).
"""

from __future__ import annotations

import torch
import torch.fx
from torch import nn
from torch.profiler import record_function

from recsys_models.attention import DinAttention
from recsys_models.config import DinConfig
from recsys_models.features import FeatureSpec, RankBatch, history_mask
from recsys_models.item_encoder import (
    ContextEncoder,
    SequenceItemEncoder,
    gather_positions,
    latest_positions,
    mlp,
    select_items,
)

DEFAULT_DIN = DinConfig()


class DIN(nn.Module):
    """RankBatch -> logits (B,). MLP input: [context, target, attended history, dense]; context None: no user-side
    features in the MLP ([target, attended history, dense])."""

    def __init__(
        self,
        items: SequenceItemEncoder,
        context: ContextEncoder | None,
        attention: DinAttention,
        head: nn.Module,
        max_len: int = 50,
    ) -> None:
        super().__init__()
        self.items = items
        self.context = context
        self.attention = attention
        self.head = head
        self.max_len = max_len

    def forward(self, batch: RankBatch) -> torch.Tensor:
        # The table lookups first, straight from the batch's fields (what TorchRec's pipelines trace to start the
        # sharded tables' input distribution one batch ahead), then the rest in one call the tracer does not enter.
        rep = self.items.represent(batch)  # (U, D_i): every distinct item of the batch once
        context = None if self.context is None else self.context(batch)
        return din_head(self, batch, rep, context)

    def _context(self, batch: RankBatch) -> list[torch.Tensor]:
        return [] if self.context is None else [self.context(batch)]

    def forward_reference(self, batch: RankBatch) -> torch.Tensor:
        """The padded computation `forward` replaces: the (B, T, D_i) history gathered, attention over it."""
        target, hist, _ = self.items(batch)
        t = hist.shape[1]
        with record_function("qarm.attention"):
            if self.max_len >= t:  # every position is kept: attention pools over a set, so skip the re-gather
                interest = self.attention(target, hist, history_mask(batch.hist_len, t))
            else:
                positions, mask = latest_positions(batch.hist_len, self.max_len)
                interest = self.attention(target, gather_positions(hist, positions), mask)
        with record_function("qarm.mlp"):
            return self.head(torch.cat([*self._context(batch), target, interest, batch.dense], dim=-1)).squeeze(-1)


def din_head(din: DIN, batch: RankBatch, rep: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    """DIN after its lookups: the distinct items' rows rep (U, D_i) and the context (B, F_c * D), or None without
    user context -> logits (B,).
    Its shapes steer Python (min, len), so TorchRec's pipeline tracer records it as one call (`torch.fx.wrap`)."""
    assert batch.target_pos is not None and batch.hist_pos is not None
    with record_function("qarm.features"):
        # DIN attends over the latest max_len positives only (the history is oldest first).
        positions, mask = latest_positions(batch.hist_len, min(din.max_len, batch.hist.shape[1]))
        sel = select_items(batch.hist_pos, positions, mask)
    with record_function("qarm.attention"):
        # the target rows and the pooled history, both gathered from rep (the gradients land in one (U, D_i))
        target, interest = din.attention.forward_jagged(rep, batch.target_pos, sel)
    with record_function("qarm.mlp"):
        return din.head(torch.cat([*([] if context is None else [context]), target, interest, batch.dense],
                                  dim=-1)).squeeze(-1)


torch.fx.wrap("din_head")


def build_din(spec: FeatureSpec, content: torch.Tensor | None = None, cfg: DinConfig = DEFAULT_DIN, *,
              device: torch.device | None = None) -> DIN:
    """content: (N, d) float32 frozen content vectors when spec.dense_dim > 0, else None. device: where the
    embedding tables are allocated (`torch.device("meta")` defers them to DMP sharding)."""
    items = SequenceItemEncoder(spec, content, device=device)
    context = ContextEncoder(spec, device=device) if cfg.user_context else None
    head = mlp((context.dim if context is not None else 0) + 2 * items.dim + spec.dense_in_features, cfg.mlp)
    attention = DinAttention(items.dim, cfg.attention_hidden, cfg.attention_softmax)
    return DIN(items, context, attention, head, cfg.max_len)
