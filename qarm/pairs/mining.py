"""Pair mining for alignment: U2I triggers + Swing I2I neighbours -> one deduplicated pairs frame.

Deduplication (the alignment loss is symmetric, so a pair is unordered):
- self pairs (a == a) are dropped;
- each pair is canonicalised to trigger_idx < target_idx, so (a, b) and (b, a) are one pair;
- within a source, repeats are merged: a U2I pair's weight is the number of (user, target) positives
  that mined it (either direction), a Swing pair's weight its score (the max of the two directions);
- U2I pairs capped per item (U2IConfig.max_pairs_per_item = m > 0, `cap_per_item`): a pair stays when it is
  among the m of highest weight of either of its items;
- a pair found by both sources is kept once, under the first source in `sources` order, and counted
  in stats["pairs_in_both_sources"].
Rows are sorted by (trigger_idx, target_idx), so the frame is deterministic.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl

from qarm.errors import QarmError
from qarm.pairs.config import PairsConfig
from qarm.pairs.records import MinedPairs, PairStats
from qarm.pairs.swing import merge_swing_parts, swing_part
from qarm.pairs.u2i import mine_u2i
from qarm.ranks import ONE_PROCESS, Ranks

PAIR_SCHEMA = {"trigger_idx": pl.Int32, "target_idx": pl.Int32, "source": pl.Utf8, "weight": pl.Float32}
DEFAULT_PAIRS = PairsConfig()


def _check_train_pos(train_pos: pl.DataFrame, n_items: int) -> None:
    need = {"user_idx": pl.Int32, "item_idx": pl.Int32, "ts": pl.Int64}
    for col, dtype in need.items():
        if col not in train_pos.columns:
            raise QarmError(f"train_pos: missing column {col!r}; expected user_idx Int32, item_idx Int32, ts Int64")
        if not train_pos.schema[col].is_integer():
            raise QarmError(f"train_pos.{col}: expected an integer column ({dtype}), got {train_pos.schema[col]}")
    if len(train_pos) and (train_pos["item_idx"].min() < 0 or train_pos["item_idx"].max() >= n_items):
        raise QarmError(f"train_pos.item_idx: values must lie in [0, n_items={n_items})")
    if len(train_pos) and train_pos["user_idx"].min() < 0:
        raise QarmError("train_pos.user_idx: values must be >= 0")


def canonical_pairs(a: np.ndarray, b: np.ndarray, weight: np.ndarray, source: str, how: str) -> pl.DataFrame:
    """Unordered, self-free, merged pairs of one source. a, b: (P,) item_idx; weight: (P,); how = 'count' or
    'max' (how repeated pairs merge their weights)."""
    df = pl.DataFrame(
        {"a": a.astype(np.int32), "b": b.astype(np.int32), "w": weight.astype(np.float32)}
    ).filter(pl.col("a") != pl.col("b"))
    df = df.select(
        pl.min_horizontal("a", "b").alias("trigger_idx"), pl.max_horizontal("a", "b").alias("target_idx"), "w"
    )
    agg = pl.len().cast(pl.Float32) if how == "count" else pl.col("w").max()
    return (
        df.group_by("trigger_idx", "target_idx")
        .agg(agg.alias("weight"))
        .with_columns(source=pl.lit(source))
        .select(list(PAIR_SCHEMA))
        .cast(PAIR_SCHEMA)  # type: ignore[arg-type]
    )


def cap_per_item(pairs: pl.DataFrame, m: int) -> pl.DataFrame:
    """The pairs (trigger_idx, target_idx, weight, ...) that are among the m of highest weight of either of their
    items (ties: the lower other item first); m = 0 keeps every pair. Rows keep their order."""
    if m <= 0 or pairs.is_empty():
        return pairs
    ends = pl.concat([
        pairs.select(pl.int_range(pl.len()).alias("row"), pl.col("trigger_idx").alias("item"),
                     pl.col("target_idx").alias("other"), "weight"),
        pairs.select(pl.int_range(pl.len()).alias("row"), pl.col("target_idx").alias("item"),
                     pl.col("trigger_idx").alias("other"), "weight"),
    ])
    top = (ends.sort(["item", "weight", "other"], descending=[False, True, False])
           .filter(pl.int_range(pl.len()).over("item") < m)["row"].unique())
    keep = np.zeros(len(pairs), bool)
    keep[top.to_numpy()] = True
    return pairs.filter(pl.Series(keep))


def mine_pairs(train_pos: pl.DataFrame, n_items: int, config: PairsConfig = DEFAULT_PAIRS, *,
               seed: int = 0, device: str = "cpu", ranks: Ranks = ONE_PROCESS, distributed: bool = False) -> MinedPairs:
    """Mine alignment pairs from TRAIN positives only.

    train_pos: (user_idx Int32, item_idx Int32, ts Int64), one row per positive of the TRAIN split.
    config: which sources and their models; seed: the replicate seed (U2I init and shuffling, Swing sampling);
    device: where the U2I two towers train. Several ranks (every rank calls this with the same arguments): each
    computes the Swing neighbours of its items (`swing_part`, gathered by `ranks`: exactly the one-process
    neighbours) and, when `distributed`, the U2I towers train under DDP over the default process group
    (qarm.pairs.two_tower); every rank returns the same pairs.
    """
    _check_train_pos(train_pos, n_items)
    per_source: dict[str, pl.DataFrame] = {}
    raw: dict[str, int] = {}
    losses: tuple[float, ...] = ()
    u2i_emb, over_cap = None, 0
    for src in config.sources:
        if src == "u2i":
            trig, info = mine_u2i(train_pos, n_items, config.u2i, seed=seed, device=device, distributed=distributed)
            raw["u2i"] = len(trig)
            losses = tuple(float(x) for x in info["u2i_loss_per_epoch"])  # type: ignore[union-attr]
            u2i_emb = info["u2i_item_embeddings"]
            a, b = trig["trigger_idx"].to_numpy(), trig["target_idx"].to_numpy()
            found = canonical_pairs(a, b, np.ones(len(a)), "u2i", "count")
            per_source[src] = cap_per_item(found, config.u2i.max_pairs_per_item)
            over_cap = len(found) - len(per_source[src])
        else:
            nb = merge_swing_parts(ranks.all_parts(swing_part(train_pos, n_items, config.swing, seed=seed,
                                                              rank=ranks.rank, world_size=ranks.size)))
            raw["i2i"] = len(nb)
            a, b = nb["item_idx"].to_numpy(), nb["neighbor_idx"].to_numpy()
            per_source[src] = canonical_pairs(a, b, nb["score"].to_numpy(), "i2i", "max")
    ordered = [per_source[s] for s in config.sources]
    both = pl.concat(ordered) if ordered else pl.DataFrame(schema=PAIR_SCHEMA)
    pairs = both.unique(["trigger_idx", "target_idx"], keep="first", maintain_order=True).sort(
        "trigger_idx", "target_idx"
    )
    stats = _stats(pairs, per_source, raw, n_items, len(both) - len(pairs), len(train_pos), config, losses)
    return MinedPairs(pairs, replace(stats, u2i_pairs_over_cap=over_cap), u2i_emb)


def _stats(pairs: pl.DataFrame, per_source: dict[str, pl.DataFrame], raw: dict[str, int], n_items: int,
           overlap: int, n_pos: int, config: PairsConfig, losses: tuple[float, ...]) -> PairStats:
    def coverage(df: pl.DataFrame) -> float:
        items = pl.concat([df["trigger_idx"], df["target_idx"]]).unique()
        return len(items) / n_items if n_items else 0.0

    counts = pairs.group_by("source").len()
    per = {s: 0 for s in per_source} | dict(zip(counts["source"].to_list(), counts["len"].to_list()))
    return PairStats(
        n_items=n_items, n_train_positives=n_pos, sources=tuple(config.sources), n_pairs=len(pairs),
        pairs_per_source={k: int(v) for k, v in per.items()}, raw_pairs_per_source=raw,
        unique_pairs_found_per_source={s: len(df) for s, df in per_source.items()},
        pairs_in_both_sources=overlap, item_coverage=coverage(pairs),
        item_coverage_per_source={s: coverage(df) for s, df in per_source.items()}, u2i_loss_per_epoch=losses,
    )
