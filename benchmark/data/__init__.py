"""Data: real dataset loaders, canonical schema, leak-free splits, synthetic generator (issue 3).

    from benchmark.data import DataConfig, prepare
    data = prepare(DataConfig(dataset="movielens-100k"))
    data.train  # user_idx, item_idx, ts, label, hist_item_idx (T latest positives before ts), rating

See benchmark/data/prepared.py for the columns of every frame and datasets/<name>/README.md for sources.
"""

from __future__ import annotations

from benchmark.data.config import (
                                   AmazonConfig,
                                   DataConfig,
                                   GenericConfig,
                                   MicroLensConfig,
                                   SplitConfig,
                                   SyntheticConfig,
)
from benchmark.data.prepare import build_prepared, prepare
from benchmark.data.prepared import PreparedData
from benchmark.data.schema import DataWarning, RawData

__all__ = ["AmazonConfig", "DataConfig", "DataWarning", "GenericConfig", "MicroLensConfig", "PreparedData",
           "RawData", "SplitConfig", "SyntheticConfig", "build_prepared", "prepare"]
