"""Ranking metrics: AUC, GAUC, LogLoss, overall and per item slice.

- AUC: Mann-Whitney with average ranks for ties: (sum of positive ranks - P(P+1)/2) / (P N).
- GAUC (DIN, Zhou et al. 2018; FuxiCTR `gAUC`): sum_u n_u AUC_u / sum_u n_u over users with both
  labels, n_u = the user's impressions (impression-weighted).
- LogLoss: mean binary cross-entropy with predictions clipped to [eps, 1 - eps].
Undefined values (a slice with one class, no user with both labels) are NaN.

Across ranks (benchmark.core.world): each rank predicts a part of a split; `World.gather_rows` puts every
rank's predictions back in row order, and the metrics are computed once over all of them, never averaged over
per-rank figures (an average of per-rank AUCs is not the AUC: the ranking pairs across ranks are missing).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from benchmark.core.errors import DataError

EPS = 1e-7


def _arrays(labels: np.ndarray, preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.float64).ravel()
    p = np.asarray(preds).astype(np.float64).ravel()
    if y.shape != p.shape:
        raise DataError(f"metrics: labels {y.shape} and preds {p.shape} differ in shape")
    return y, p


def auc(labels: np.ndarray, preds: np.ndarray) -> float:
    """labels (n,) in {0, 1}, preds (n,) scores -> ROC AUC (NaN if only one class)."""
    y, p = _arrays(labels, preds)
    frame = pl.DataFrame({"y": y, "p": p}).with_columns(r=pl.col("p").rank("average"))
    return _auc_from_ranks(frame).item(0, "auc")


def _auc_from_ranks(frame: pl.DataFrame, by: str | None = None) -> pl.DataFrame:
    """Columns y, r (rank within group) [, by] -> one row per group: auc, n, n_pos."""
    aggs = [
        (pl.col("r") * pl.col("y")).sum().alias("rank_pos"),
        pl.col("y").sum().alias("n_pos"),
        pl.len().alias("n"),
    ]
    grouped = frame.group_by(by, maintain_order=True).agg(aggs) if by else frame.select(aggs)
    return grouped.with_columns(n_neg=pl.col("n") - pl.col("n_pos")).with_columns(
        auc=pl.when((pl.col("n_pos") > 0) & (pl.col("n_neg") > 0))
        .then((pl.col("rank_pos") - pl.col("n_pos") * (pl.col("n_pos") + 1) / 2) / (pl.col("n_pos") * pl.col("n_neg")))
        .otherwise(None)
        .cast(pl.Float64)
        .fill_null(float("nan"))
    )


def gauc(users: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> float:
    """users (n,) user_idx -> impression-weighted per-user AUC over users with both labels (NaN if none)."""
    y, p = _arrays(labels, preds)
    u = np.asarray(users).ravel()
    if u.shape != y.shape:
        raise DataError(f"gauc: users {u.shape} and labels {y.shape} differ in shape")
    frame = pl.DataFrame({"u": u, "y": y, "p": p}).with_columns(r=pl.col("p").rank("average").over("u"))
    per_user = _auc_from_ranks(frame, by="u").filter(pl.col("auc").is_not_nan())
    if per_user.height == 0:
        return math.nan
    # math.fsum: exactly rounded, so the figure does not depend on the (unordered) group-by's row order
    weighted = (per_user["auc"] * per_user["n"]).to_numpy()
    return math.fsum(weighted.tolist()) / math.fsum(per_user["n"].to_numpy().astype(np.float64).tolist())


def logloss(labels: np.ndarray, preds: np.ndarray, eps: float = EPS) -> float:
    """Mean BCE of probabilities preds (n,) clipped to [eps, 1 - eps]."""
    y, p = _arrays(labels, preds)
    if y.size == 0:
        return math.nan
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def all_metrics(users: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    """{auc, gauc, logloss, n, n_pos} of one set of impressions; preds are probabilities."""
    y = np.asarray(labels)
    return {
        "auc": auc(y, preds),
        "gauc": gauc(users, y, preds),
        "logloss": logloss(y, preds),
        "n": float(y.size),
        "n_pos": float(np.asarray(y, dtype=np.float64).sum()),
    }


def slice_sizes(frame: pl.DataFrame) -> dict[str, float]:
    """{n_items, n_users, n_gauc_users} of a slice (columns user_idx, item_idx, label): distinct items and users,
    and the users with both labels (the ones GAUC averages over; 0 makes GAUC undefined)."""
    per_user = frame.group_by("user_idx").agg(pos=pl.col("label").sum(), n=pl.len())
    both = per_user.filter((pl.col("pos") > 0) & (pl.col("pos") < pl.col("n"))).height
    return {"n_items": float(frame["item_idx"].n_unique()), "n_users": float(per_user.height),
            "n_gauc_users": float(both)}


def slice_metrics(frame_with_preds: pl.DataFrame, items: pl.DataFrame) -> dict[str, dict[str, float]]:
    """Metrics per slice: all, cold, warm, pop_bucket_<b> (by the items frame's `is_cold`, `pop_bucket`), each
    with its size: rows n, positives n_pos, distinct items n_items and users n_users, GAUC's users n_gauc_users.

    The popularity buckets split the WARM items only (pop_bucket_0 = the warm long tail .. head); the cold items
    are their own bucket, the `cold` slice (issue 20: before, cold items sat in bucket 0 with the long tail and
    the bucket mixed two populations). frame_with_preds: user_idx, item_idx, label, pred (probability). items:
    item_idx, is_cold, pop_bucket.
    """
    for col in ("user_idx", "item_idx", "label", "pred"):
        if col not in frame_with_preds.columns:
            raise DataError(f"slice_metrics: frame_with_preds lacks column {col!r}")
    for col in ("item_idx", "is_cold", "pop_bucket"):
        if col not in items.columns:
            raise DataError(f"slice_metrics: items lacks column {col!r}")
    joined = frame_with_preds.join(
        items.select("item_idx", "is_cold", "pop_bucket"), on="item_idx", how="left", maintain_order="left"
    )
    if joined["is_cold"].null_count():
        raise DataError("slice_metrics: some item_idx of the predictions are missing from the items frame")

    def of(f: pl.DataFrame) -> dict[str, float]:
        return all_metrics(f["user_idx"].to_numpy(), f["label"].to_numpy(), f["pred"].to_numpy()) | slice_sizes(f)

    out = {"all": of(joined), "cold": of(joined.filter(pl.col("is_cold"))), "warm": of(joined.filter(~pl.col("is_cold")))}
    warm = joined.filter(~pl.col("is_cold"))
    for b in sorted(items.filter(~pl.col("is_cold"))["pop_bucket"].unique().to_list()):
        out[f"pop_bucket_{b}"] = of(warm.filter(pl.col("pop_bucket") == b))
    return out


def cold_slice_metrics(frame_with_preds: pl.DataFrame, items: pl.DataFrame) -> dict[str, dict[str, float]]:
    """{"cold": metrics and sizes of the rows whose item has no training impression (items' `is_cold`)}, or {}
    when no row is cold. For validation predictions: the rows of the data.split.val_cold_item_frac draw (and of
    any other item without a train row), the slice `qarm-bench select --slice cold` chooses on."""
    cold_ids = items.filter(pl.col("is_cold"))["item_idx"].implode()
    cold = frame_with_preds.filter(pl.col("item_idx").is_in(cold_ids))
    if not cold.height:
        return {}
    return {"cold": all_metrics(cold["user_idx"].to_numpy(), cold["label"].to_numpy(), cold["pred"].to_numpy())
            | slice_sizes(cold)}


def weighted_auc(labels: np.ndarray, preds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC with row weights (the Mann-Whitney statistic, ties counting one half): labels, preds (n,); weights
    (n,) or (R, n) for R weightings at once -> a scalar array or (R,). A row of weight w counts as w copies of
    the impression; NaN where a weighting leaves one class."""
    y, p = _arrays(labels, preds)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(p, kind="stable")
    ps, ys, ws = p[order], y[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])  # groups of tied scores
    wp = np.add.reduceat(ws * ys, starts, axis=1)
    wn = np.add.reduceat(ws * (1.0 - ys), starts, axis=1)
    below = np.cumsum(wn, axis=1) - wn  # negative weight strictly below each tie group
    num = (wp * (below + 0.5 * wn)).sum(1)
    den = wp.sum(1) * wn.sum(1)
    out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out if np.ndim(weights) == 2 else out[0]


def bootstrap_auc(users: np.ndarray, labels: np.ndarray, preds: np.ndarray, *, n_boot: int = 200,
                  confidence: float = 0.95, seed: int = 0) -> tuple[float, float] | None:
    """User-level bootstrap interval of the AUC: users are resampled with replacement (a user's impressions
    move together: a user drawn c times weighs c), each replicate's AUC is `weighted_auc`, and the interval is
    the replicates' central `confidence` range. users, labels, preds: (n,). None when the slice has one class."""
    y, p = _arrays(labels, preds)
    if y.size == 0 or y.min() == y.max():
        return None
    u = np.unique(np.asarray(users).ravel(), return_inverse=True)[1]
    n_users = int(u.max()) + 1
    rng = np.random.default_rng(seed)
    aucs = []
    for start in range(0, n_boot, 50):  # (50, n) weight matrices bound the memory
        counts = rng.multinomial(n_users, np.full(n_users, 1.0 / n_users), size=min(50, n_boot - start))
        aucs.append(weighted_auc(y, p, counts[:, u].astype(np.float64)))
    a = np.concatenate(aucs)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return None
    lo, hi = np.quantile(a, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def slice_bootstrap(frame_with_preds: pl.DataFrame, items: pl.DataFrame, *, n_boot: int = 200,
                    seed: int = 0) -> dict[str, tuple[float, float] | None]:
    """bootstrap_auc of the all, cold and warm slices (items frame: item_idx, is_cold)."""
    joined = frame_with_preds.join(items.select("item_idx", "is_cold"), on="item_idx", how="left",
                                   maintain_order="left")
    out = {}
    for name, f in (("all", joined), ("cold", joined.filter(pl.col("is_cold"))),
                    ("warm", joined.filter(~pl.col("is_cold")))):
        out[name] = bootstrap_auc(f["user_idx"].to_numpy(), f["label"].to_numpy(), f["pred"].to_numpy(),
                                  n_boot=n_boot, seed=seed) if f.height else None
    return out
