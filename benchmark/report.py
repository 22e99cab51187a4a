"""The suite report: mean ± std and CI over seeds, Δ vs id_only with a paired t-test, code quality, provenance.

Input is the suite's manifest `runs/<suite>/results.json`, written by `qarm-bench run`:

    {"provenance": {...}, "cells": [{"model", "variant", "seed", "test": {slice: {metric: value}}}, ...],
     "code_quality": {code_set: {diagnostic: value}}, "data_stats": {...}, ...}

Output: `report.md` (also printed) and `report.json`, whose rows are
(model, variant, slice, metric, mean, std, ci_low, ci_high, n_seeds, delta_vs_id_only, p_value, delta_ci_low,
delta_ci_high); `--html` also writes the self-contained `report.html` (benchmark/report_html.py).
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import QarmBenchError
from benchmark.stages import read_json, write_json

METRICS = ("auc", "gauc", "logloss")
MAIN_SLICES = ("all", "cold", "warm")
BASELINE = "id_only"
HEADLINE_VARIANT = "aligned_codes"  # the QARM variant (aligned encoder -> RQ codes)
HEADLINE_SLICES = ("all", "cold")
ALPHA = 0.05
# Extended, never renamed: a key once published stays (report.json and `report --json` readers rely on them).
ROW_KEYS = ("model", "variant", "slice", "metric", "mean", "std", "ci_low", "ci_high", "n_seeds",
            "delta_vs_id_only", "p_value", "delta_ci_low", "delta_ci_high")


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, sample std, ci_low, ci_high) with a Student-t interval; one value gives a zero-width interval."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return (math.nan,) * 4  # type: ignore[return-value]
    mean = float(v.mean())
    if v.size == 1:
        return mean, 0.0, mean, mean
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=v.size - 1)) * std / math.sqrt(v.size)
    return mean, std, mean - half, mean + half


def paired_delta(values: dict[int, float], baseline: dict[int, float]) -> tuple[float, float]:
    """Mean of per-seed differences vs the baseline and the paired t-test p-value (NaN under 2 pairs)."""
    from scipy import stats

    seeds = sorted(s for s in values if s in baseline and math.isfinite(values[s]) and math.isfinite(baseline[s]))
    if not seeds:
        return math.nan, math.nan
    a = np.array([values[s] for s in seeds])
    b = np.array([baseline[s] for s in seeds])
    delta = float((a - b).mean())
    if len(seeds) < 2 or np.allclose(a - b, (a - b)[0]):
        return delta, math.nan
    return delta, float(stats.ttest_rel(a, b).pvalue)


def paired_delta_ci(values: dict[int, float], baseline: dict[int, float],
                    confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval at `confidence` of the mean per-seed difference vs the baseline (NaN under 2 pairs).

    The interval the paired t-test inverts: mean(d) ± t(1 - α/2, n - 1) · sd(d) / √n over the seeds both share.
    """
    seeds = sorted(s for s in values if s in baseline and math.isfinite(values[s]) and math.isfinite(baseline[s]))
    if len(seeds) < 2:
        return math.nan, math.nan
    _, _, lo, hi = mean_ci([values[s] - baseline[s] for s in seeds], confidence)
    return lo, hi


def aggregate(cells: Iterable[dict[str, Any]], confidence: float = 0.95) -> list[dict[str, Any]]:
    """One row per (model, variant, slice, metric) over the seeds present."""
    by_key: dict[tuple[str, str, str, str], dict[int, float]] = defaultdict(dict)
    for cell in cells:
        for slice_name, metrics in cell["test"].items():
            for metric, value in metrics.items():
                if metric in METRICS:
                    by_key[(cell["model"], cell["variant"], slice_name, metric)][int(cell["seed"])] = (
                        math.nan if value is None else float(value))
    rows = []
    for (model, variant, slice_name, metric), per_seed in sorted(by_key.items()):
        mean, std, lo, hi = mean_ci(list(per_seed.values()), confidence)
        base = by_key.get((model, BASELINE, slice_name, metric))
        delta, p = (math.nan, math.nan) if base is None or variant == BASELINE else paired_delta(per_seed, base)
        d_lo, d_hi = ((math.nan, math.nan) if base is None or variant == BASELINE
                      else paired_delta_ci(per_seed, base, confidence))
        rows.append({
            "model": model, "variant": variant, "slice": slice_name, "metric": metric,
            "mean": _nan_to_none(mean), "std": _nan_to_none(std), "ci_low": _nan_to_none(lo),
            "ci_high": _nan_to_none(hi), "n_seeds": sum(math.isfinite(v) for v in per_seed.values()),
            "delta_vs_id_only": _nan_to_none(delta), "p_value": _nan_to_none(p),
            "delta_ci_low": _nan_to_none(d_lo), "delta_ci_high": _nan_to_none(d_hi),
        })
    return rows


def _fmt(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+.4f}"


def metrics_table(rows: list[dict[str, Any]], variants_order: Sequence[str]) -> str:
    """Markdown: one line per (model, variant, slice), AUC/GAUC/LogLoss as mean ± std [CI], Δ AUC and p."""
    idx = {(r["model"], r["variant"], r["slice"], r["metric"]): r for r in rows}
    models = sorted({r["model"] for r in rows}, key=lambda m: ("dlrm", "din", "sim").index(m) if m in
                    ("dlrm", "din", "sim") else 9)
    variants = [v for v in variants_order if any(r["variant"] == v for r in rows)]
    lines = ["| model | variant | slice | AUC | GAUC | LogLoss | Δ AUC vs id_only | p | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model in models:
        for variant in variants:
            for slice_name in MAIN_SLICES:
                cells = [idx.get((model, variant, slice_name, m)) for m in METRICS]
                if all(c is None for c in cells):
                    continue
                parts = []
                for c in cells:
                    if c is None or c["mean"] is None:
                        parts.append("–")
                    else:
                        parts.append(f"{c['mean']:.4f} ± {c['std']:.4f} [{c['ci_low']:.4f}, {c['ci_high']:.4f}]")
                auc = cells[0] or {}
                lines.append(f"| {model} | {variant} | {slice_name} | {' | '.join(parts)} | "
                             f"{_signed(auc.get('delta_vs_id_only'))} | {_fmt(auc.get('p_value'), 3)} | "
                             f"{auc.get('n_seeds', 0)} |")
    return "\n".join(lines)


def significance_key(rows: Sequence[dict[str, Any]]) -> str:
    """The p-value that decides significance: 'p_value_holm' when the rows carry it, else the unadjusted 'p_value'.

    DESIGN.md: only Holm-significant deltas are called significant; rows made before Holm adjustment existed
    fall back to the per-comparison p, and every caller says which one it used.
    """
    return "p_value_holm" if any("p_value_holm" in r for r in rows) else "p_value"


def verdict(delta: float | None, p: float | None, metric: str) -> str:
    """'significant gain' / 'significant loss' only at p < ALPHA; LogLoss improves downwards."""
    if delta is None:
        return "no paired seeds"
    if p is None:
        return "no test (under 2 seeds)"
    if p >= ALPHA:
        return "not significant"
    improved = delta < 0 if metric == "logloss" else delta > 0
    return "significant gain" if improved else "significant loss"


def _model_order(models: Iterable[str]) -> list[str]:
    known = ("dlrm", "din", "sim")
    return sorted(set(models), key=lambda m: (known.index(m) if m in known else len(known), m))


def headline_variants(rows: Sequence[dict[str, Any]], variants: Sequence[str] = ()) -> list[str]:
    """The QARM variant first, then every other non-baseline variant (in `variants` order, else by name)."""
    present = {r["variant"] for r in rows} - {BASELINE}
    rest = [v for v in variants if v in present] + sorted(present - set(variants))
    return [v for v in dict.fromkeys([HEADLINE_VARIANT, *rest]) if v in present]


@dataclass(frozen=True)
class HeadlineDelta:
    """One line of the headline: a variant vs id_only on one model, slice and metric."""

    model: str
    variant: str
    slice: str
    metric: str
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None  # the significance_key(rows) p-value
    n_seeds: int

    @property
    def verdict(self) -> str:
        return verdict(self.delta, self.p, self.metric)


def headline_items(rows: Sequence[dict[str, Any]], variants: Sequence[str] = (),
                   metric: str = "auc") -> list[HeadlineDelta]:
    """Per model (dlrm, din, sim order), the QARM variant then the others, on the all and cold slices."""
    key = significance_key(rows)
    idx = {(r["model"], r["variant"], r["slice"], r["metric"]): r for r in rows}
    out = []
    for model in _model_order(r["model"] for r in rows):
        for variant in headline_variants(rows, variants):
            for slice_name in HEADLINE_SLICES:
                r = idx.get((model, variant, slice_name, metric))
                if r is not None:
                    out.append(HeadlineDelta(model, variant, slice_name, metric, r["delta_vs_id_only"],
                                             r["delta_ci_low"], r["delta_ci_high"], r.get(key), r["n_seeds"]))
    return out


def significance_label(rows: Sequence[dict[str, Any]]) -> str:
    return ("Holm-adjusted p" if significance_key(rows) == "p_value_holm"
            else "p (paired t-test, not Holm-adjusted)")


def headline_deltas(rows: Sequence[dict[str, Any]], variants: Sequence[str] = (), confidence: float = 0.95,
                    metric: str = "auc") -> str:
    """Markdown: per model, each variant vs id_only on all/cold test AUC: Δ, its CI, p and a verdict.

    A delta is called a gain only when its (Holm-adjusted when the rows carry it) p is below ALPHA.
    """
    if not any(r["variant"] == BASELINE for r in rows):
        return f"No {BASELINE} variant in this suite: no deltas to report."
    lines = [f"**Headline: Δ test {metric.upper()} vs {BASELINE}** (mean of per-seed differences, "
             f"{round(100 * confidence)}% CI, {significance_label(rows)}; significant when p < {ALPHA}):", ""]
    for h in headline_items(rows, variants, metric):
        ci = "" if h.ci_low is None else f" [{_signed(h.ci_low)}, {_signed(h.ci_high)}]"
        lines.append(f"- {h.model} · {h.variant} · {h.slice}: Δ {_signed(h.delta)}{ci}, p = {_fmt(h.p, 3)}: "
                     f"{h.verdict} ({h.n_seeds} seeds)")
    return "\n".join(lines)


def parent_run_description(description: str, rows: Sequence[dict[str, Any]], variants: Sequence[str] = (),
                           confidence: float = 0.95) -> str:
    """The MLflow parent run's description: the suite's `suite.description`, then the headline deltas."""
    head = headline_deltas(rows, variants, confidence)
    return f"{description.strip()}\n\n{head}" if description.strip() else head


def code_quality_table(code_quality: dict[str, dict[str, Any]]) -> str:
    lines = ["| code set | collision rate | items per code | unique codes | utilisation per level | "
             "perplexity per level | recon. MSE per level | HR@10 (prefix 1) |",
             "|---|---|---|---|---|---|---|---|"]

    def lst(v: Any) -> str:
        return "–" if not v else ", ".join(f"{x:.3f}" for x in v)

    for name, d in sorted(code_quality.items()):
        hr = d.get("hr_at_10")
        if isinstance(hr, list | tuple):
            hr = hr[0] if hr else None
        lines.append(f"| {name} | {_fmt(d.get('collision_rate'), 3)} | {_fmt(d.get('mean_items_per_code'), 2)} | "
                     f"{d.get('n_unique_codes', '–')} | {lst(d.get('utilisation'))} | {lst(d.get('perplexity'))} | "
                     f"{lst(d.get('reconstruction_mse'))} | {_fmt(hr, 3)} |")
    return "\n".join(lines)


def render_markdown(manifest: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    prov = manifest.get("provenance", {})
    stats = manifest.get("data_stats", {})
    variants_order = manifest.get("variants", [])
    out = [f"# QARM-Bench report: {manifest.get('suite', '?')}", ""]
    out.append(f"Provenance: config {prov.get('config_hash', '?')} · git {prov.get('git_sha', '?')} · "
               f"dataset {prov.get('dataset', '?')} ({prov.get('dataset_fingerprint', '?')}) · "
               f"split {prov.get('split', '?')} · seeds {prov.get('seeds', '?')} · {prov.get('date', '?')}")
    if stats:
        out.append("")
        out.append(f"Data: {stats.get('users', '?')} users, {stats.get('items', '?')} items, "
                   f"{stats.get('impressions', '?')} impressions; train/val/test {stats.get('train', '?')}/"
                   f"{stats.get('val', '?')}/{stats.get('test', '?')}; cold items {stats.get('cold_items', '?')}; "
                   f"cold-user share of test rows {_fmt(stats.get('cold_user_share_test'), 3)}.")
    out += ["", "## Ranking metrics (test, at the best validation epoch)", "",
            f"mean ± std [{int(100 * manifest.get('confidence', 0.95))}% CI] over seeds; Δ and p: paired over "
            "seeds against id_only (t-test; – under 2 seeds).", "", metrics_table(rows, variants_order)]
    if manifest.get("code_quality"):
        out += ["", "## Code quality", "", code_quality_table(manifest["code_quality"])]
    if manifest.get("alignment"):
        a = manifest["alignment"]
        out += ["", "## Alignment", "",
                f"Held-out pair recall@{a.get('k', 10)}: frozen {_fmt(a.get('frozen_recall'), 3)} → aligned "
                f"{_fmt(a.get('aligned_recall'), 3)} ({a.get('n_pairs', '?')} pairs; {a.get('pair_sources', '')})."]
    if manifest.get("plots"):
        out += ["", "## Plots", ""] + [f"- `{p}`" for p in manifest["plots"]]
    return "\n".join(out) + "\n"


def write_report(suite_dir: Path, manifest: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Aggregate, render and save report.md + report.json under suite_dir; returns (markdown, rows)."""
    rows = aggregate(manifest["cells"], manifest.get("confidence", 0.95))
    md = render_markdown(manifest, rows)
    suite_dir.mkdir(parents=True, exist_ok=True)
    tmp = suite_dir / ".report.md.tmp"
    tmp.write_text(md, encoding="utf-8")
    tmp.replace(suite_dir / "report.md")
    write_json(suite_dir / "report.json", rows)
    return md, rows


def load_manifest(suite_dir: Path) -> dict[str, Any]:
    path = suite_dir / "results.json"
    if not path.exists():
        raise QarmBenchError(f"{path}: no results for suite '{suite_dir.name}' yet; run `qarm-bench run` first")
    try:
        manifest = read_json(path)
    except (OSError, json.JSONDecodeError) as e:
        raise QarmBenchError(f"{path}: unreadable results manifest ({e}); rerun `qarm-bench run`") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("cells"), list):
        raise QarmBenchError(f"{path}: expected an object with a 'cells' list")
    return manifest


def main_report(args: Any) -> int:
    """`qarm-bench report SUITE [--json] [--html]`: rewrite report.md/.json (and report.html) from the manifest."""
    suite_dir = Path(args.runs_dir) / args.suite
    manifest = load_manifest(suite_dir)
    if args.html:  # redraw the plots, so a suite run before a plot existed gets it in its page too
        from benchmark import plots

        manifest["plots"] = [str(p.relative_to(suite_dir)) for p in plots.make_all(manifest, suite_dir / "plots")]
    md, rows = write_report(suite_dir, manifest)
    if args.json:
        print(json.dumps([{k: r[k] for k in ROW_KEYS} for r in rows], indent=1))
    else:
        print(md)
    if args.html:
        from benchmark.report_html import write_html

        path = write_html(suite_dir, manifest, rows)
        # stdout stays pure JSON under --json
        print(f"HTML report: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0
