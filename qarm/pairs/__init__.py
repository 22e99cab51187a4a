"""Alignment pair mining on the TRAIN split: U2I triggers (two-tower retrieval model) and I2I Swing.

The configs import no torch; the miners (torch, scipy) load on first use, so a suite config can be
read and checked without them.
"""

from __future__ import annotations

import importlib
from typing import Any

from qarm.pairs.config import PairsConfig, SwingConfig, U2IConfig

_LAZY = {"PAIR_SCHEMA": "mining", "MinedPairs": "records", "PairStats": "records", "mine_pairs": "mining",
         "swing_topk": "swing", "swing_part": "swing", "merge_swing_parts": "swing", "mine_u2i": "u2i"}

__all__ = ["PairsConfig", "SwingConfig", "U2IConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"qarm.pairs.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'qarm.pairs' has no attribute {name!r}")
