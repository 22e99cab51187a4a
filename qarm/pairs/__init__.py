"""Alignment pair mining on the TRAIN split: U2I triggers (two-tower retrieval model) and I2I Swing."""

from __future__ import annotations

from qarm.pairs.mining import PAIR_SCHEMA, mine_pairs
from qarm.pairs.swing import SwingConfig, swing_topk
from qarm.pairs.u2i import U2IConfig, mine_u2i

__all__ = ["PAIR_SCHEMA", "SwingConfig", "U2IConfig", "mine_pairs", "mine_u2i", "swing_topk"]
