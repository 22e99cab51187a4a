"""Trainable item towers for alignment: the fusion head over per-modality features, optionally fed by
a text encoder whose top transformer blocks (or all of it) are fine-tuned.

Partial fine-tuning (anchors §1.10 item 1 leaves the trainable part open): with k trainable blocks the
frozen lower blocks run once, their output (the input of block n-k) is cached per item, and training
only re-runs the top k blocks over the cache, so fine-tuning the top of MiniLM is cheap on a CPU.

Shapes: N items, B batch, T tokens, H hidden size, d output dim.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from qarm.encoders.fusion import ItemEncoder
from qarm.encoders.text import TextEncoder, collate, mean_pool, transformer_layers
from qarm.errors import QarmError


def _pad_cache(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item (T_i, H) states -> (N, T, H) float32 and mask (N, T) int64."""
    t = max(s.shape[0] for s in states)
    out = torch.zeros(len(states), t, states[0].shape[1])
    mask = torch.zeros(len(states), t, dtype=torch.long)
    for i, s in enumerate(states):
        out[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return out, mask


class TextTower(nn.Module):
    """Text features (B, H), L2-normalised, from a partly or fully trainable HF encoder.

    trainable: k top blocks over cached lower-layer states (1 <= k <= n_layers), or "all" (the whole
    model, embeddings included, from token ids). Dropout stays off (eval mode): deterministic training
    on small pair sets.
    """

    def __init__(self, encoder: TextEncoder, texts: list[str], trainable: int | str, progress: bool = False) -> None:
        super().__init__()
        self.model = copy.deepcopy(encoder.model).eval()  # never change the caller's encoder; moves with the tower
        n_layers = encoder.num_layers
        self.full = trainable == "all"
        if not self.full and not (isinstance(trainable, int) and 1 <= trainable <= n_layers):
            raise QarmError(f"AlignConfig.trainable_layers must be 0..{n_layers} or 'all', got {trainable!r}")
        for p in self.model.parameters():
            p.requires_grad_(self.full)
        if self.full:
            ids, mask = collate(encoder.tokenize(texts), encoder.pad_id)
            self.register_buffer("ids", ids, persistent=False)
            self.register_buffer("mask", mask, persistent=False)
            self.top = nn.ModuleList()
            return
        assert isinstance(trainable, int)
        first = n_layers - trainable
        self.top = nn.ModuleList(list(transformer_layers(self.model))[first:])
        for p in self.top.parameters():
            p.requires_grad_(True)
        cache, mask = _pad_cache(encoder.hidden_states(texts, first, progress=progress))
        self.register_buffer("cache", cache, persistent=False)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """rows: (B,) int64 item_idx -> (B, H) L2-normalised text features."""
        from transformers.masking_utils import create_bidirectional_mask

        mask = self.mask[rows]
        t = int(mask.sum(1).max())  # trim padding beyond the batch's longest item
        mask = mask[:, :t]
        if self.full:
            h = self.model(input_ids=self.ids[rows, :t], attention_mask=mask).last_hidden_state
        else:
            h = self.cache[rows, :t]
            attn = create_bidirectional_mask(config=self.model.config, inputs_embeds=h, attention_mask=mask)
            for layer in self.top:
                out = layer(h, attention_mask=attn)
                h = out[0] if isinstance(out, tuple) else out
        return F.normalize(mean_pool(h, mask), dim=-1)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The weights training changes (for saving): the top blocks, or the whole model."""
        mod = self.model if self.full else self.top
        return {k: v.detach().cpu().clone() for k, v in mod.state_dict().items()}


class AlignModel(nn.Module):
    """item_idx (B,) -> aligned embedding (B, d): frozen features, or a text tower, into the fusion head.

    feats: modality -> (N, D_m) float32 frozen features; present: modality -> (N,) bool.
    """

    def __init__(
        self,
        feats: dict[str, torch.Tensor],
        present: dict[str, torch.Tensor],
        head: ItemEncoder,
        text_tower: TextTower | None = None,
    ) -> None:
        super().__init__()
        self.head = head
        self.text_tower = text_tower
        self.feats = feats
        self.present = present

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """rows: (B,) int64 item_idx -> (B, d) aligned embeddings."""
        feats = {m: f[rows] for m, f in self.feats.items()}
        if self.text_tower is not None:
            feats["text"] = self.text_tower(rows)
        return self.head(feats, {m: p[rows] for m, p in self.present.items()})

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The weights alignment trained: the fusion head, and the text tower's trained blocks if any."""
        state = {f"head.{k}": v.detach().cpu().clone() for k, v in self.head.state_dict().items()}
        if self.text_tower is not None:
            state |= {f"text_tower.{k}": v for k, v in self.text_tower.trainable_state().items()}
        return state

    @torch.no_grad()
    def embed_all(self, n_items: int, batch_size: int = 1024) -> torch.Tensor:
        """(N, d) float32 CPU embeddings of every item (computed on the model's device)."""
        from qarm.alignment.distributed import embed_items

        return embed_items(self, n_items, batch_size)
