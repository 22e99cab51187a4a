"""Report plots (matplotlib, Agg backend, PNG). Each function takes plain report data and a path.

- metric per variant with CI bars, one panel per model, bars grouped by slice
- per-level codebook utilisation per code set
- collision rate per code set (quantizer)
- alignment loss and held-out pair-recall curves
- AUC by item-popularity bucket (the analogue of QARM Table 6)
- forest plot: Δ vs id_only with its CI per variant, one panel per (model, slice), significant deltas marked
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from benchmark.core.records import CellRecord, SuiteResults  # noqa: E402
from benchmark.report.headline import significance_key  # noqa: E402
from benchmark.report.stats import ALPHA  # noqa: E402
from benchmark.report.tables import BASELINE, aggregate, code_quality  # noqa: E402
from qarm.alignment.config import AlignSummary  # noqa: E402

SLICES = ("all", "cold", "warm")


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def metric_with_ci(rows: list[dict[str, Any]], metric: str, variants: Sequence[str], path: Path) -> Path:
    models = [m for m in ("dlrm", "din", "sim") if any(r["model"] == m for r in rows)]
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(5.2 * max(len(models), 1), 4.2), squeeze=False)
    width = 0.8 / len(SLICES)
    for ax, model in zip(axes[0], models):
        x = np.arange(len(variants))
        for j, s in enumerate(SLICES):
            means, lo, hi = [], [], []
            for v in variants:
                r = next((r for r in rows if (r["model"], r["variant"], r["slice"], r["metric"]) ==
                          (model, v, s, metric)), None)
                m = r["mean"] if r and r["mean"] is not None else math.nan
                means.append(m)
                lo.append(m - r["ci_low"] if r and r["ci_low"] is not None else 0.0)
                hi.append(r["ci_high"] - m if r and r["ci_high"] is not None else 0.0)
            ax.bar(x + (j - 1) * width, means, width, yerr=[lo, hi], capsize=2, label=s)
        ax.set_xticks(x, variants, rotation=35, ha="right", fontsize=8)
        ax.set_title(f"{model}: test {metric}")
        finite = [r["mean"] for r in rows if r["metric"] == metric and r["mean"] is not None]
        if finite:
            pad = 0.05 * (max(finite) - min(finite) + 1e-3)
            ax.set_ylim(min(finite) - 5 * pad, max(finite) + 5 * pad)
        ax.legend(fontsize=8)
    return _save(fig, path)


def codebook_utilisation(code_quality: dict[str, dict[str, Any]], path: Path) -> Path:
    names = [n for n, d in sorted(code_quality.items()) if d.get("utilisation")]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    width = 0.8 / max(len(names), 1)
    levels = max((len(code_quality[n]["utilisation"]) for n in names), default=0)
    for i, name in enumerate(names):
        util = code_quality[name]["utilisation"]
        ax.bar(np.arange(len(util)) + i * width, util, width, label=name)
    # the level is an integer: one tick per level, at the middle of its group of bars
    ax.set_xticks(np.arange(levels) + (len(names) - 1) * width / 2, [str(level) for level in range(levels)])
    ax.set_xlabel("level")
    ax.set_ylabel("share of codebook used")
    ax.set_ylim(0, 1.05)
    ax.set_title("per-level codebook utilisation")
    ax.legend(fontsize=8)
    return _save(fig, path)


def collision_rates(code_quality: dict[str, dict[str, Any]], path: Path) -> Path:
    names = sorted(code_quality)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.bar(names, [code_quality[n].get("collision_rate", math.nan) for n in names])
    ax.set_ylabel("share of items whose full code is shared")
    ax.set_title("collision rate per code set")
    ax.tick_params(axis="x", rotation=30)
    return _save(fig, path)


def alignment_series(summary: AlignSummary) -> dict[str, list[float]]:
    """The alignment plot's data: epoch, train loss and held-out pair recall@k per epoch (NaN without
    held-out pairs)."""
    return {"epoch": [h.epoch for h in summary.history], "loss": [h.loss for h in summary.history],
            "val_recall": [math.nan if h.val_recall is None else h.val_recall for h in summary.history]}


def alignment_curves(summary: AlignSummary, path: Path) -> Path:
    series, k = alignment_series(summary), summary.k
    fig, ax1 = plt.subplots(figsize=(6.5, 4))
    ax1.plot(series["epoch"], series["loss"], "o-", color="tab:blue", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are integers: no 0.5 ticks
    ax1.set_ylabel("contrastive loss", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(series["epoch"], series["val_recall"], "s-", color="tab:red", label=f"held-out pair recall@{k}")
    ax2.set_ylabel(f"pair recall@{k}", color="tab:red")
    ax1.set_title("alignment")
    return _save(fig, path)


def auc_by_popularity(cells: Sequence[CellRecord], variants: Sequence[str], path: Path) -> Path:
    # the cold items are their own bucket (no training row), left of the warm buckets (benchmark.cells.metrics)
    buckets = ["cold"] + sorted({s for c in cells for s in c.test if s.startswith("pop_bucket_")},
                                key=lambda s: int(s.rsplit("_", 1)[1]))
    models = [m for m in ("dlrm", "din", "sim") if any(c.model == m for c in cells)]
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(5.2 * max(len(models), 1), 4), squeeze=False)
    rows = aggregate(cells)
    for ax, model in zip(axes[0], models):
        for v in variants:
            ys = [next((r["mean"] for r in rows if (r["model"], r["variant"], r["slice"], r["metric"]) ==
                        (model, v, b, "auc")), None) for b in buckets]
            ax.plot(range(len(buckets)), [math.nan if y is None else y for y in ys], "o-", label=v)
        ax.set_xticks(range(len(buckets)), [b.rsplit("_", 1)[-1] for b in buckets])
        ax.set_xlabel("popularity bucket (cold = no training row; 0 = warm long tail)")
        ax.set_ylabel("test AUC")
        ax.set_title(f"{model}: AUC by item popularity")
        ax.legend(fontsize=7)
    return _save(fig, path)


def forest_plot(rows: list[dict[str, Any]], metric: str, variants: Sequence[str], path: Path,
                confidence: float = 0.95) -> Path:
    """Δ test `metric` vs id_only per variant with its paired CI; rows = models, columns = slices; zero line drawn.

    A delta is marked significant (filled) when its p (Holm-adjusted when the rows carry `p_value_holm`, else
    the paired t-test's) is below ALPHA; the title says which p decided.
    """
    key = significance_key(rows)
    p_label = "Holm-adjusted p" if key == "p_value_holm" else "unadjusted paired p"
    models = [m for m in ("dlrm", "din", "sim") if any(r["model"] == m for r in rows)]
    slices = [s for s in SLICES if any(r["slice"] == s for r in rows)]
    shown = [v for v in variants if v != BASELINE and any(r["variant"] == v for r in rows)]
    idx = {(r["model"], r["variant"], r["slice"], r["metric"]): r for r in rows}
    n_rows, n_cols = max(len(models), 1), max(len(slices), 1)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 0.45 * max(len(shown), 1) * n_rows + 1.6 * n_rows),
                             squeeze=False)
    for i, model in enumerate(models):
        for j, s in enumerate(slices):
            ax = axes[i][j]
            ax.axvline(0.0, color="black", lw=1)
            for y, v in enumerate(shown):
                r = idx.get((model, v, s, metric))
                if r is None or r["delta_vs_id_only"] is None:
                    continue
                d = r["delta_vs_id_only"]
                if r["delta_ci_low"] is not None:
                    ax.errorbar(d, y, xerr=[[d - r["delta_ci_low"]], [r["delta_ci_high"] - d]], fmt="none",
                                ecolor="tab:gray", capsize=3, lw=1.5)
                p = r.get(key)
                sig = p is not None and p < ALPHA
                ax.plot(d, y, "o", ms=7, color="tab:red" if sig else "white", mec="tab:red" if sig else "tab:gray",
                        mew=1.5)
            ax.set_yticks(range(len(shown)), shown if j == 0 else [""] * len(shown), fontsize=8)
            ax.set_ylim(len(shown) - 0.5, -0.5)
            ax.set_title(f"{model} · {s}", fontsize=9)
            ax.tick_params(axis="x", labelsize=8)
            ax.xaxis.set_major_locator(plt.MaxNLocator(nbins=5))
            if i == n_rows - 1:
                ax.set_xlabel(f"Δ test {metric} vs {BASELINE}", fontsize=8)
    handles = [plt.Line2D([], [], ls="", marker="o", color="tab:red", mec="tab:red", label=f"{p_label} < {ALPHA}"),
               plt.Line2D([], [], ls="", marker="o", color="white", mec="tab:gray", label="not significant / no test"),
               plt.Line2D([], [], color="tab:gray", label=f"{round(100 * confidence)}% CI of the paired Δ")]
    why = "" if key == "p_value_holm" else " (the rows carry no Holm-adjusted p)"
    fig.suptitle(f"Δ test {metric.upper()} vs {BASELINE}, paired over seeds; filled: {p_label} < {ALPHA}{why}",
                 fontsize=10)
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_all(results: SuiteResults, out_dir: Path) -> list[Path]:
    """Every plot the results have data for (the forest plot first); returns the written paths."""
    cells = results.cells
    variants = results.variants or sorted({c.variant for c in cells})
    rows = aggregate(cells, results.confidence)
    paths = []
    if any(r["variant"] == BASELINE for r in rows) and any(r["variant"] != BASELINE for r in rows):
        paths.append(forest_plot(rows, "auc", variants, out_dir / "forest_auc.png", results.confidence))
    paths += [metric_with_ci(rows, m, variants, out_dir / f"{m}_by_variant.png") for m in ("auc", "gauc", "logloss")]
    cq = code_quality(results)
    if cq:
        paths.append(codebook_utilisation(cq, out_dir / "codebook_utilisation.png"))
        paths.append(collision_rates(cq, out_dir / "collision_rate.png"))
    if results.item_side and results.item_side[0].alignment.history:
        paths.append(alignment_curves(results.item_side[0].alignment, out_dir / "alignment.png"))
    if any(s.startswith("pop_bucket_") for c in cells for s in c.test):
        paths.append(auc_by_popularity(cells, variants, out_dir / "auc_by_popularity.png"))
    return paths
