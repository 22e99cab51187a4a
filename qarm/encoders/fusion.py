"""Multi-modal item encoder: per-modality features -> concatenate -> project to d (default 64).

QARM §3 feeds text, audio and image tokens of an item into one MLLM and aligns its output (anchors
§1.3); with the encoders available offline we encode each modality separately and fuse late. An item
missing a modality (no text, no image file) gets a learned missing-modality vector in that slot, so it
is never dropped: cold items need an embedding too.

Shapes: N items, B batch, D_m width of modality m, d output dim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qarm.encoders.image import ImageEncoder
from qarm.encoders.text import TextEncoder
from qarm.errors import QarmError
from qarm.ranks import ONE_PROCESS, Ranks


@dataclass(frozen=True)
class ItemFeatures:
    """Frozen per-modality features of ALL items (cold ones included).

    features: modality -> (N, D_m) float32 (rows of missing items are zeros);
    present: modality -> (N,) bool, False where the item lacks that modality.
    """

    features: dict[str, np.ndarray]
    present: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        if not self.features or set(self.features) != set(self.present):
            raise QarmError("ItemFeatures: need at least one modality, the same keys in features and present")
        n = {f.shape[0] for f in self.features.values()} | {p.shape[0] for p in self.present.values()}
        if len(n) != 1 or any(f.ndim != 2 for f in self.features.values()):
            raise QarmError(f"ItemFeatures: every modality must be (N, D_m) with one N; got row counts {sorted(n)}")

    @property
    def n_items(self) -> int:
        return next(iter(self.features.values())).shape[0]

    @property
    def dims(self) -> dict[str, int]:
        return {k: int(v.shape[1]) for k, v in self.features.items()}

    def frozen_embeddings(self) -> np.ndarray:
        """The frozen baseline (N, sum D_m) float32: modalities concatenated, rows L2-normalised
        (a missing modality contributes zeros)."""
        x = np.concatenate([self.features[k] * self.present[k][:, None] for k in sorted(self.features)], axis=1)
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def item_features(
    texts: Sequence[str] | None = None,
    image_paths: Sequence[str | Path | None] | None = None,
    *,
    text_encoder: TextEncoder | None = None,
    image_encoder: ImageEncoder | None = None,
    progress: bool = False,
    ranks: Ranks = ONE_PROCESS,
) -> ItemFeatures:
    """Encode every item's modalities with frozen encoders.

    texts: (N,) indexed by item_idx; '' (or blank) marks a missing text. image_paths: (N,), None marks a
    missing image. Encoders default to MiniLM / EfficientNet-Lite0 when their modality is given.
    ranks: in a world of several (every rank calls this with the same arguments), each rank encodes its part of
    the encoders' batches and the rows are gathered in item order: every rank returns the one-process features
    exactly (TextEncoder.encode, ImageEncoder.encode).
    """
    if texts is not None and image_paths is not None and len(texts) != len(image_paths):
        raise QarmError(f"item_features: {len(texts)} texts but {len(image_paths)} image paths (one per item)")
    feats: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    if texts is not None:
        enc = text_encoder or TextEncoder()
        has = np.array([bool(t.strip()) for t in texts], dtype=bool)
        out = np.zeros((len(texts), enc.dim), dtype=np.float32)
        idx = np.flatnonzero(has)
        if len(idx):
            out[idx] = enc.encode([texts[i] for i in idx], progress=progress, ranks=ranks)
        feats["text"], present["text"] = out, has
    if image_paths is not None:
        enc_i = image_encoder or ImageEncoder()
        has = np.array([p is not None for p in image_paths], dtype=bool)
        out = np.zeros((len(image_paths), enc_i.dim), dtype=np.float32)
        idx = np.flatnonzero(has)
        if len(idx):
            out[idx] = enc_i.encode([image_paths[i] for i in idx], progress=progress,  # type: ignore[misc]
                                    ranks=ranks)
        feats["image"], present["image"] = out, has
    if not feats:
        raise QarmError("item_features: give texts and/or image_paths")
    return ItemFeatures(feats, present)


def _projection(width: int, d: int, hidden: int) -> nn.Module:
    return nn.Linear(width, d) if hidden <= 0 else nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, d))


class ItemEncoder(nn.Module):
    """Fusion head: {modality: (B, D_m)} + {modality: (B,) bool present} -> (B, d), L2-normalised.

    dims: modality -> D_m (the order is sorted by name); d: output dim; hidden: 0 = linear projections, > 0 =
    two-layer MLPs with that hidden width; fusion:
      "concat": z = P([x_1; ...; x_M]), one projection of the concatenated inputs;
      "gated":  z = sum_m g_m(x) P_m(x_m), a projection per modality and softmax gates g(x) = softmax(W [x_1; ...])
                over the modalities, so the head can lean on whichever modality carries the signal per item.
    Either way a missing modality's slot x_m holds its learned missing-modality vector.
    """

    def __init__(self, dims: dict[str, int], d: int = 64, hidden: int = 0, fusion: str = "concat") -> None:
        super().__init__()
        if not dims or d < 1 or fusion not in ("concat", "gated"):
            raise QarmError(f"ItemEncoder: need at least one modality, d >= 1 and fusion 'concat' or 'gated', got "
                            f"{dims}, d={d}, fusion={fusion!r}")
        self.modalities = sorted(dims)
        self.fusion = fusion
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.randn(dims[m]) * 0.02) for m in self.modalities})
        width = sum(dims.values())
        if fusion == "concat":
            self.proj: nn.Module = _projection(width, d, hidden)
        else:
            self.proj = nn.ModuleDict({m: _projection(dims[m], d, hidden) for m in self.modalities})
            self.gate = nn.Linear(width, len(self.modalities))

    def forward(self, feats: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for m in self.modalities:
            x, has = feats[m], present[m].to(torch.bool).unsqueeze(-1)
            parts.append(torch.where(has, x, self.missing[m].to(x.dtype).expand_as(x)))
        if self.fusion == "concat":
            return F.normalize(self.proj(torch.cat(parts, dim=-1)), dim=-1)
        g = torch.softmax(self.gate(torch.cat(parts, dim=-1)), dim=-1)  # (B, M)
        z = torch.stack([self.proj[m](x) for m, x in zip(self.modalities, parts)], dim=1)  # (B, M, d)
        return F.normalize((g.unsqueeze(-1) * z).sum(1), dim=-1)
