"""Item alignment: symmetric in-batch InfoNCE over mined (trigger, target) pairs (QARM §3).

The config and records import no torch; the trainer loads on first use."""

from __future__ import annotations

import importlib
from typing import Any

from qarm.alignment.config import AlignConfig, AlignEpoch, AlignSummary

_LAZY = {"AlignResult": "train", "align": "train", "recall_at_k": "train", "split_pairs": "train",
         "describe_trained": "train"}

__all__ = ["AlignConfig", "AlignEpoch", "AlignSummary", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"qarm.alignment.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'qarm.alignment' has no attribute {name!r}")
