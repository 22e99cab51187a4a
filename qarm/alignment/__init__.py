"""Item alignment: symmetric in-batch InfoNCE over mined (trigger, target) pairs (QARM §3), and its held-out
references (frozen, aligned, U2I item-ID, popularity, content probe) on the same test pairs.

The config and records import no torch; the trainer loads on first use."""

from __future__ import annotations

import importlib
from typing import Any

from qarm.alignment.config import AlignConfig, AlignEpoch, AlignSummary
from qarm.alignment.records import AlignReferences, PairRecall, ReferenceRow, render_references

_LAZY = {"AlignResult": "train", "align": "train", "describe_trained": "train", "probe_config": "train",
         "recall_at_k": "heldout", "split_pairs": "heldout", "PairSplit": "heldout", "pair_recall": "heldout",
         "references": "heldout"}

__all__ = ["AlignConfig", "AlignEpoch", "AlignReferences", "AlignSummary", "PairRecall", "ReferenceRow",
           "render_references", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"qarm.alignment.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'qarm.alignment' has no attribute {name!r}")
