"""The suite report: mean ± std and CI over seeds, Δ vs id_only with a paired t-test, code quality, provenance.

Input is the suite's manifest `runs/<suite>/results.json` (benchmark.records.SuiteResults), written by
`qarm-bench run`: provenance, data statistics, each replicate's item side (pair stats, alignment summary,
code-set diagnostics) and one CellRecord per (variant, model, seed) with test metrics per slice.

Output: `report.md` (also printed) and `report.json`, whose rows are
(model, variant, slice, metric, mean, std, ci_low, ci_high, n_seeds, delta_vs_id_only, p_value, modalities);
`modalities` names the item contents that fed the variant's content features and codes ("text", "image",
"image+text"; "" for id_only, which reads none).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.cache import read_json, write_json
from benchmark.errors import QarmBenchError
from benchmark.records import CellRecord, SuiteResults, from_json
from benchmark.variants import VARIANTS

METRICS = ("auc", "gauc", "logloss")
MAIN_SLICES = ("all", "cold", "warm")
BASELINE = "id_only"
ROW_KEYS = ("model", "variant", "slice", "metric", "mean", "std", "ci_low", "ci_high", "n_seeds",
            "delta_vs_id_only", "p_value", "modalities")


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


def aggregate(cells: Iterable[CellRecord], confidence: float = 0.95,
              modalities: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One row per (model, variant, slice, metric) over the seeds present. modalities: the item contents that fed
    the suite's embeddings and codes (AlignSummary.modalities), recorded on the rows of cells that read content:
    a content variant, or a SIM cell whose hard search matched on a code set."""
    fed = "+".join(sorted(modalities))
    by_key: dict[tuple[str, str, str, str], dict[int, float]] = defaultdict(dict)
    reads_content: set[tuple[str, str]] = set()
    for cell in cells:
        variant = VARIANTS.get(cell.variant)
        if variant is None or variant.content_source or cell.sim_search_codes:
            reads_content.add((cell.model, cell.variant))
        for slice_name, metrics in cell.test.items():
            for metric, value in metrics.items():
                if metric in METRICS:
                    by_key[(cell.model, cell.variant, slice_name, metric)][int(cell.seed)] = (
                        math.nan if value is None else float(value))
    rows = []
    for (model, variant, slice_name, metric), per_seed in sorted(by_key.items()):
        mean, std, lo, hi = mean_ci(list(per_seed.values()), confidence)
        base = by_key.get((model, BASELINE, slice_name, metric))
        delta, p = (math.nan, math.nan) if base is None or variant == BASELINE else paired_delta(per_seed, base)
        rows.append({
            "model": model, "variant": variant, "slice": slice_name, "metric": metric,
            "mean": _nan_to_none(mean), "std": _nan_to_none(std), "ci_low": _nan_to_none(lo),
            "ci_high": _nan_to_none(hi), "n_seeds": sum(math.isfinite(v) for v in per_seed.values()),
            "delta_vs_id_only": _nan_to_none(delta), "p_value": _nan_to_none(p),
            "modalities": fed if (model, variant) in reads_content else "",
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
    lines = ["| model | variant | slice | AUC | GAUC | LogLoss | Δ AUC vs id_only | p | seeds | modalities |",
             "|---|---|---|---|---|---|---|---|---|---|"]
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
                             f"{auc.get('n_seeds', 0)} | {auc.get('modalities') or '–'} |")
    return "\n".join(lines)


def code_quality_table(code_quality: dict[str, dict[str, Any]]) -> str:
    lines = ["| code set | collision rate | items per code | unique codes | utilisation per level | "
             "perplexity per level | recon. MSE per level | HR@10 (prefix 1) |",
             "|---|---|---|---|---|---|---|---|"]

    def lst(v: Any) -> str:
        return "–" if not v else ", ".join(f"{x:.3f}" for x in v)

    for name, d in sorted(code_quality.items()):
        hr = d.get("neighbour_hr")
        hr = hr[0] if hr else None
        lines.append(f"| {name} | {_fmt(d.get('collision_rate'), 3)} | {_fmt(d.get('mean_items_per_code'), 2)} | "
                     f"{d.get('n_unique_codes', '–')} | {lst(d.get('utilisation'))} | {lst(d.get('perplexity'))} | "
                     f"{lst(d.get('reconstruction_mse'))} | {_fmt(hr, 3)} |")
    return "\n".join(lines)


def code_quality(results: SuiteResults) -> dict[str, dict[str, Any]]:
    """Diagnostics of the residual code sets (kind "rq") of the first replicate, by code set name."""
    if not results.item_side:
        return {}
    return {cs.name: cs.diagnostics for cs in results.item_side[0].code_sets if cs.kind == "rq"}


def render_markdown(results: SuiteResults, rows: list[dict[str, Any]]) -> str:
    prov = results.provenance
    stats = results.data_stats
    variants_order = results.variants
    title = f"{results.suite} [{results.label}]" if results.label else results.suite
    out = [f"# QARM-Bench report: {title}", ""]
    out.append(f"Provenance: config {prov.config_hash} · git {prov.git_sha} · dataset {prov.dataset} "
               f"({prov.dataset_fingerprint}) · split {prov.split} · seeds {list(prov.seeds)} · {prov.date}")
    if stats:
        out.append("")
        out.append(f"Data: {stats.get('users', '?')} users, {stats.get('items', '?')} items, "
                   f"{stats.get('impressions', '?')} impressions; train/val/test {stats.get('train', '?')}/"
                   f"{stats.get('val', '?')}/{stats.get('test', '?')}; cold items {stats.get('cold_items', '?')}; "
                   f"cold-user share of test rows {_fmt(stats.get('cold_user_share_test'), 3)}.")
    out += ["", "## Ranking metrics (test, at the best validation epoch)", "",
            f"mean ± std [{int(100 * results.confidence)}% CI] over seeds; Δ and p: paired over "
            "seeds against id_only (t-test; – under 2 seeds).", "", metrics_table(rows, variants_order)]
    cq = code_quality(results)
    if cq:
        out += ["", "## Code quality", "", code_quality_table(cq)]
    if results.item_side:
        rep = results.item_side[0]
        a, ps = rep.alignment, rep.pair_stats
        out += ["", "## Alignment", "",
                f"Held-out pair recall@{a.k}: frozen {_fmt(a.frozen_recall, 3)} → aligned "
                f"{_fmt(a.aligned_recall, 3)} ({ps.n_pairs} pairs; {', '.join(ps.sources)}; trained: {a.trained}; "
                f"modalities: {' + '.join(a.modalities) or '–'})."]
    if results.plots:
        out += ["", "## Plots", ""] + [f"- `{p}`" for p in results.plots]
    return "\n".join(out) + "\n"


def write_report(suite_dir: Path, results: SuiteResults) -> tuple[str, list[dict[str, Any]]]:
    """Aggregate, render and save report.md + report.json under suite_dir; returns (markdown, rows)."""
    modalities = results.item_side[0].alignment.modalities if results.item_side else ()
    rows = aggregate(results.cells, results.confidence, modalities)
    md = render_markdown(results, rows)
    suite_dir.mkdir(parents=True, exist_ok=True)
    tmp = suite_dir / ".report.md.tmp"
    tmp.write_text(md, encoding="utf-8")
    tmp.replace(suite_dir / "report.md")
    write_json(suite_dir / "report.json", rows)
    return md, rows


def load_manifest(suite_dir: Path) -> SuiteResults:
    path = suite_dir / "results.json"
    if not path.exists():
        raise QarmBenchError(f"{path}: no results for suite '{suite_dir.name}' yet; run `qarm-bench run` first")
    try:
        manifest = read_json(path)
    except (OSError, json.JSONDecodeError) as e:
        raise QarmBenchError(f"{path}: unreadable results manifest ({e}); rerun `qarm-bench run`") from None
    return from_json(SuiteResults, manifest, path)


def main_report(args: Any) -> int:
    suite_dir = Path(args.runs_dir) / args.suite
    manifest = load_manifest(suite_dir)
    md, rows = write_report(suite_dir, manifest)
    if args.json:
        print(json.dumps([{k: r[k] for k in ROW_KEYS} for r in rows], indent=1))
    else:
        print(md)
    return 0
