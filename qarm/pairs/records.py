"""Records of the pairs stage: what was mined and what the miner found. Imports no torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class PairStats:
    """What the pairs stage found. Counts are pairs after deduplication unless named raw_.

    pairs_per_source: pairs kept under each source; raw_pairs_per_source: mined before dedup;
    unique_pairs_found_per_source: distinct unordered pairs each source found (a pair found by both counts in
    both; pairs_in_both_sources counts those); item_coverage: share of the N items in at least one pair;
    u2i_loss_per_epoch: the two-tower model's training loss (empty without the u2i source);
    u2i_pairs_over_cap: distinct U2I pairs left out by pairs.u2i.max_pairs_per_item (counted out of
    unique_pairs_found_per_source["u2i"] already).
    """

    n_items: int
    n_train_positives: int
    sources: tuple[str, ...]
    n_pairs: int
    pairs_per_source: dict[str, int]
    raw_pairs_per_source: dict[str, int]
    unique_pairs_found_per_source: dict[str, int]
    pairs_in_both_sources: int
    item_coverage: float
    item_coverage_per_source: dict[str, float]
    u2i_loss_per_epoch: tuple[float, ...] = ()
    u2i_pairs_over_cap: int = 0


@dataclass(frozen=True, eq=False)
class MinedPairs:
    """pairs: (trigger_idx Int32, target_idx Int32, source Utf8, weight Float32), deduplicated (module docstring);
    stats: PairStats; u2i_item_embeddings: (N, d) float32 item tower of the U2I model, L2-normalised (the
    collaborative reference of alignment), None without the u2i source."""

    pairs: pl.DataFrame
    stats: PairStats
    u2i_item_embeddings: np.ndarray | None
