"""The model factory: a ranker by name for a feature set and the `[rank]` settings.

    build_model("dlrm" | "din" | "sim", fs, cfg, search_codes=..., meta=...) -> nn.Module (RankBatch -> logits)

SIM's search unit is the caller's decision, made where the variant is built: `search` says hard or soft (default
`cfg.sim.search`), and hard search matches on `search_codes` (N, L_s) int64, whatever code set the caller chose
(QARM: the variant's own RQ codes; a controlled comparison: one frozen code set for every variant).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from recsys_models.config import MODELS, TrainConfig, batch_layout  # noqa: F401 (batch_layout: re-exported)
from recsys_models.din import build_din
from recsys_models.dlrm import build_dlrm
from recsys_models.errors import RecsysModelError
from recsys_models.features import FeatureSet
from recsys_models.sim import build_sim


def build_model(model_name: str, fs: FeatureSet, cfg: TrainConfig, *, search: Literal["hard", "soft"] | None = None,
                search_codes: torch.Tensor | None = None, meta: bool = False) -> nn.Module:
    """The ranker `model_name` for feature set `fs`. meta=True: every embedding table on the meta device (for
    DMP sharding, recsys_models.sharding). search: SIM's search unit (None: cfg.sim.search); search_codes:
    (N, L_s) int64, used by SIM's hard search only."""
    device = torch.device("meta") if meta else None
    if model_name == "dlrm":
        return build_dlrm(fs.spec, cfg.dlrm, device=device)
    if model_name == "din":
        return build_din(fs.spec, fs.content, cfg.din, device=device)
    if model_name == "sim":
        return build_sim(fs.spec, fs.content, cfg.sim, search=search, search_codes=search_codes, device=device)
    raise RecsysModelError(f"model: unknown {model_name!r}; expected one of {', '.join(MODELS)}")
