"""Synthetic content vectors: a stand-in for a text encoder where encoding is not what is measured.

Encoding 1M item texts with MiniLM takes hours on 2 CPU cores, so the scale check (docs/scale.md) replaces the
frozen encoder with vectors derived from each item's category (the synthetic dataset's planted cluster,
`category = "cluster-<c>"`) plus noise; the encoder's own cost is measured apart, in items/s
(`qarm-bench perf encode`). The vectors carry the cluster and nothing else, so downstream stages (alignment,
quantizers, rankers) see a content signal of a known strength:

    x_i = normalize(mu_{c(i)} + noise * eps_i),   mu_c ~ unit-norm Gaussian direction per category (seeded),
                                                  eps_i ~ N(0, I_D / D), so |eps_i| ~ 1

Two items of one category have expected cosine ~ 1 / (1 + noise^2); of two categories ~ 0. Deterministic: the
same categories, dimension, noise and seed give identical vectors. The features are stored under the modality
name "synthetic", so the report's modality column and the alignment line say what fed the content features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from qarm.encoders.config import SyntheticContentConfig
from qarm.errors import QarmError

if TYPE_CHECKING:
    from qarm.encoders.fusion import ItemFeatures

MODALITY = "synthetic"


def category_labels(categories: Sequence[str | None]) -> np.ndarray:
    """(N,) category strings (None = unknown, one shared category) -> (N,) int64 labels, in sorted-name order."""
    names = np.array(["" if c is None else str(c) for c in categories], dtype=object)
    if names.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(names, return_inverse=True)[1].astype(np.int64).ravel()


def synthetic_vectors(labels: np.ndarray, config: SyntheticContentConfig) -> np.ndarray:
    """labels: (N,) int64 category per item, in [0, C) -> (N, D) float32 L2-normalised rows (the formula in the
    module docstring), D = config.dim. Centroids are drawn first (C of them), then the noise row by row."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and labels.min() < 0):
        raise QarmError(f"synthetic_vectors: labels must be a (N,) array of non-negative integers, got shape "
                        f"{labels.shape}")
    rng = np.random.default_rng(config.seed)
    n_cat = int(labels.max()) + 1 if labels.size else 0
    mu = rng.standard_normal((n_cat, config.dim), dtype=np.float32)
    mu /= np.maximum(np.linalg.norm(mu, axis=1, keepdims=True), 1e-12)
    x = rng.standard_normal((labels.size, config.dim), dtype=np.float32)
    x *= np.float32(config.noise / np.sqrt(config.dim))
    x += mu[labels]
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def synthetic_item_features(categories: Sequence[str | None], config: SyntheticContentConfig) -> ItemFeatures:
    """The frozen-stage artifact from synthetic vectors: ItemFeatures with one modality, "synthetic", (N, D),
    every item present. categories: (N,) by item_idx."""
    from qarm.encoders.fusion import ItemFeatures

    x = synthetic_vectors(category_labels(categories), config)
    return ItemFeatures({MODALITY: x}, {MODALITY: np.ones(x.shape[0], dtype=bool)})
