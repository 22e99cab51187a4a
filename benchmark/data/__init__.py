"""Data: real dataset loaders, canonical schema, leak-free splits, synthetic generator.

    from benchmark.data import DataConfig, prepare
    data = prepare(DataConfig(dataset="movielens-100k"))
    data.train  # user_idx, item_idx, ts, label, hist_item_idx (T latest positives before ts), rating

See benchmark/data/prepared.py for the columns of every frame and datasets/<name>/README.md for sources.
The configs import nothing heavy; loaders (polars) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from benchmark.config.data import (
    AmazonConfig,
    DataConfig,
    GenericConfig,
    KuaiRandConfig,
    KuaiRecConfig,
    MicroLensConfig,
    NegativesConfig,
    SplitConfig,
    SyntheticConfig,
)

_LAZY = {"build_prepared": "preparation", "prepare": "preparation", "PreparedData": "prepared", "DataWarning": "schema",
         "RawData": "schema"}

__all__ = ["AmazonConfig", "DataConfig", "GenericConfig", "KuaiRandConfig", "KuaiRecConfig", "MicroLensConfig",
           "NegativesConfig", "SplitConfig", "SyntheticConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"benchmark.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'benchmark.data' has no attribute {name!r}")
