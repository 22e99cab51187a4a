"""Item alignment: symmetric in-batch InfoNCE over mined (trigger, target) pairs (QARM §3)."""

from __future__ import annotations

from qarm.alignment.train import AlignConfig, AlignResult, align, recall_at_k, split_pairs

__all__ = ["AlignConfig", "AlignResult", "align", "recall_at_k", "split_pairs"]
