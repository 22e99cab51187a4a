"""The suite report: mean ± std and CI over seeds; deltas vs id_only and aligned vs frozen with paired t-tests
and Holm-adjusted p-values; test-set bootstrap intervals; parameter counts; code quality; provenance.

Input is the suite's manifest `runs/<suite>/results.json` (benchmark.core.records.SuiteResults), written by
`qarm-bench run`: provenance, data statistics, each replicate's item side (pair stats, alignment summary,
code-set diagnostics) and one CellRecord per (variant, model, seed) with test metrics per slice.

Output: `report.md` (also printed) and `report.json`, one row per (model, variant, slice, metric) with the keys
ROW_KEYS (a contract: extended, never renamed):
    mean, std, ci_low, ci_high, n_seeds            over seeds (Student-t interval)
    delta_vs_id_only, p_value, p_value_holm        paired over seeds; Holm over one family = one model x slice
    holm_family_size, delta_ci_low, delta_ci_high    x metric, every variant vs id_only
    delta_vs_frozen, p_value_vs_frozen,            aligned_codes vs frozen_codes, aligned_dense vs frozen_dense
    p_value_vs_frozen_holm                         (null for other variants); Holm over those pairs
    bootstrap_ci_low, bootstrap_ci_high            AUC only: the envelope of the seeds' user-level bootstrap
                                                   intervals of the test AUC (the smallest interval holding every
                                                   seed's; test-set uncertainty; bounds are never averaged)
    bootstrap_ci_per_seed                          AUC only: each seed's interval, [[seed, low, high], ...]
    bootstrap_ci_per_cell                          AUC only: the same keyed by cell, [[split seed, seed, low,
                                                   high], ...] (several split seeds may share a replicate seed)
    modalities                                     the item contents that fed the cell's content features, codes
                                                   or SIM search codes ("text", "image", "image+text"; "" when
                                                   the cell reads none, e.g. a DLRM id_only)
A delta is called significant only when its Holm-adjusted p-value is below 0.05.
benchmark.report.write.write_report writes every report file (report.md, report.json, report.html, plots).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from benchmark.config.variants import find_variant
from benchmark.core.records import CellRecord, SuiteResults
from benchmark.report.primary import PrimaryFamily, power_statement, render_primary
from benchmark.report.stats import ALPHA, Unit, family_size, holm, mean_ci, paired_delta, unit_values

METRICS = ("auc", "gauc", "logloss")
MAIN_SLICES = ("all", "cold", "warm")
BASELINE = "id_only"
# QARM's claim is that alignment helps: each aligned variant against its frozen counterpart.
COUNTERPART = {"aligned_codes": "frozen_codes", "aligned_dense": "frozen_dense"}
ROW_KEYS = ("model", "variant", "slice", "metric", "mean", "std", "ci_low", "ci_high", "n_seeds",
            "delta_vs_id_only", "p_value", "p_value_holm", "holm_family_size", "delta_ci_low", "delta_ci_high",
            "delta_vs_frozen", "p_value_vs_frozen", "p_value_vs_frozen_holm", "bootstrap_ci_low",
            "bootstrap_ci_high", "modalities", "bootstrap_ci_per_seed", "bootstrap_ci_per_cell")


def _nan_to_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _per_seed(cells: Iterable[CellRecord]) -> dict[tuple[str, str, str, str], dict[Unit, float]]:
    """(model, variant, slice, metric) -> {(split seed, replicate seed): value}."""
    by_key: dict[tuple[str, str, str, str], dict[Unit, float]] = defaultdict(dict)
    for cell in cells:
        for slice_name, metrics in cell.test.items():
            for metric, value in metrics.items():
                if metric in METRICS:
                    by_key[(cell.model, cell.variant, slice_name, metric)][(int(cell.split_seed), int(cell.seed))] = (
                        math.nan if value is None else float(value))
    return by_key


def _bootstrap(cells: Iterable[CellRecord]) -> dict[tuple[str, str, str], list[tuple[int, int, float, float]]]:
    """(model, variant, slice) -> [(split seed, seed, low, high)] in (split seed, seed) order: each cell's
    user-level bootstrap interval of its test AUC. Averaging bounds over seeds is not an interval (statistics
    reference), so the rows keep each cell's and their envelope."""
    acc: dict[tuple[str, str, str], list[tuple[int, int, float, float]]] = defaultdict(list)
    for cell in cells:
        for slice_name, ci in cell.test_bootstrap.items():
            if ci is not None:
                acc[(cell.model, cell.variant, slice_name)].append((int(cell.split_seed), int(cell.seed),
                                                                    float(ci[0]), float(ci[1])))
    return {k: sorted(v) for k, v in acc.items()}


def per_cell_bootstrap_text(auc: dict[str, Any]) -> str:
    """Each cell's interval as the markdown prints it: `s<seed>`, or `s<split>/<seed>` when the row's cells come
    from several split seeds (rows written before bootstrap_ci_per_cell existed: by seed)."""
    per_cell = auc.get("bootstrap_ci_per_cell")
    if per_cell and len({sp for sp, *_ in per_cell}) > 1:
        return "; ".join(f"s{sp}/{seed} [{lo:.4f}, {hi:.4f}]" for sp, seed, lo, hi in per_cell)
    if not auc.get("bootstrap_ci_per_seed"):
        return "–"
    return "; ".join(f"s{seed} [{lo:.4f}, {hi:.4f}]" for seed, lo, hi in auc["bootstrap_ci_per_seed"])


def aggregate(cells: Iterable[CellRecord], confidence: float = 0.95,
              modalities: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One row per (model, variant, slice, metric) over the seeds present (the keys of ROW_KEYS). modalities: the
    item contents that fed the suite's embeddings and codes (AlignSummary.modalities), recorded on the rows of
    cells that read content: a content variant, or a SIM cell whose hard search matched on a code set."""
    cells = list(cells)
    fed = "+".join(sorted(modalities))
    reads_content = {(c.model, c.variant) for c in cells
                     if find_variant(c.variant) is None or find_variant(c.variant).content_source or c.sim_search_codes}
    by_key = _per_seed(cells)
    boot = _bootstrap(cells)
    rows = []
    for (model, variant, slice_name, metric), per_seed in sorted(by_key.items()):
        units = unit_values(per_seed)  # several split seeds: one value per split seed (stats, "Units")
        mean, std, lo, hi = mean_ci(list(units.values), confidence)
        base = by_key.get((model, BASELINE, slice_name, metric))
        delta, p, dlo, dhi = (math.nan,) * 4 if base is None or variant == BASELINE else \
            paired_delta(per_seed, base, confidence)
        counterpart = by_key.get((model, COUNTERPART.get(variant, ""), slice_name, metric))
        fdelta, fp, _, _ = (math.nan,) * 4 if counterpart is None else paired_delta(per_seed, counterpart, confidence)
        b = boot.get((model, variant, slice_name)) if metric == "auc" else None
        rows.append({
            "model": model, "variant": variant, "slice": slice_name, "metric": metric,
            "mean": _nan_to_none(mean), "std": _nan_to_none(std), "ci_low": _nan_to_none(lo),
            "ci_high": _nan_to_none(hi), "n_seeds": units.n,
            "delta_vs_id_only": _nan_to_none(delta), "p_value": _nan_to_none(p), "p_value_holm": None,
            "holm_family_size": 0, "delta_ci_low": _nan_to_none(dlo), "delta_ci_high": _nan_to_none(dhi),
            "delta_vs_frozen": _nan_to_none(fdelta), "p_value_vs_frozen": _nan_to_none(fp),
            "p_value_vs_frozen_holm": None,
            "bootstrap_ci_low": None if not b else min(lo for _, _, lo, _ in b),
            "bootstrap_ci_high": None if not b else max(hi for _, _, _, hi in b),
            "modalities": fed if (model, variant) in reads_content else "",
            "bootstrap_ci_per_seed": None if not b else [[s, lo, hi] for _, s, lo, hi in b],
            "bootstrap_ci_per_cell": None if not b else [[sp, s, lo, hi] for sp, s, lo, hi in b],
        })
    _adjust(rows, "p_value", "p_value_holm", "holm_family_size")
    _adjust(rows, "p_value_vs_frozen", "p_value_vs_frozen_holm", None)
    return rows


def _adjust(rows: list[dict[str, Any]], raw: str, adjusted: str, size_key: str | None) -> None:
    """Holm within each family: the rows of one model x slice x metric that carry a raw p-value."""
    families: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        families[(r["model"], r["slice"], r["metric"])].append(r)
    for fam in families.values():
        ps = [math.nan if r[raw] is None else r[raw] for r in fam]
        for r, adj in zip(fam, holm(ps)):
            r[adjusted] = _nan_to_none(adj)
            if size_key is not None:
                r[size_key] = family_size(ps)


def significant(row: dict[str, Any], key: str = "p_value_holm") -> bool:
    """A delta is significant only when its Holm-adjusted p-value is below ALPHA."""
    return row.get(key) is not None and row[key] < ALPHA


def fmt(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+.4f}"


def model_order(models: Iterable[str]) -> list[str]:
    """dlrm, din, sim, then any other model by name."""
    known = ("dlrm", "din", "sim")
    return sorted(set(models), key=lambda m: (known.index(m) if m in known else len(known), m))


UNDEFINED = "undefined"  # a metric with no value on a slice (AUC: one label class; GAUC: no user with both labels)


def _ci(c: dict[str, Any]) -> str:
    """mean ± std [CI] over seeds; one seed has no interval ("n=1"); no finite value at all is "undefined"."""
    if c["mean"] is None:
        return UNDEFINED
    if c.get("n_seeds", 0) < 2 or c["ci_low"] is None:
        return f"{c['mean']:.4f} (n=1)"
    return f"{c['mean']:.4f} ± {c['std']:.4f} [{c['ci_low']:.4f}, {c['ci_high']:.4f}]"


def ci_text(c: dict[str, Any] | None) -> str:
    """A row's value as the report prints it: "–" when the metric is absent, else `_ci`."""
    return "–" if c is None else _ci(c)


def small_n_warning(rows: Sequence[dict[str, Any]]) -> str:
    """A line for the top of the report when the seeds are too few for honest intervals ("" otherwise)."""
    n = max((r["n_seeds"] for r in rows), default=0)
    if n == 1:
        return ("**One seed:** every figure is a single run (n=1); there is no interval over seeds and no paired "
                "test. Run more seeds (suite.seeds) before reading a difference as an effect.")
    if n == 2:
        return ("**Two seeds:** every interval over seeds has df = 1 (t₀.₉₇₅ = 12.7), so the intervals are very "
                "wide and the paired tests have almost no power; treat the deltas as a first look, not evidence.")
    return ""


def smoke_note(dataset: str) -> str:
    """The line synthetic suites carry in their headline: their data are generated, so their figures are a smoke
    test of the pipeline, not evidence about QARM ("" for a real dataset)."""
    return ("**Synthetic data: smoke test, not evidence.** The figures check that the pipeline runs end to end; "
            "they say nothing about QARM on real interactions.") if dataset == "synthetic" else ""


SIZE_KEYS = (("n", "rows"), ("n_pos", "positives"), ("n_items", "items"), ("n_users", "users"),
             ("n_gauc_users", "users with both labels (GAUC)"))


def slice_order(names: Iterable[str]) -> list[str]:
    """all, cold, warm, then the popularity buckets and any other slice by name."""
    return sorted(set(names), key=lambda s: (MAIN_SLICES.index(s) if s in MAIN_SLICES else len(MAIN_SLICES), s))


def slices_table(cells: Sequence[CellRecord]) -> str:
    """Markdown: each test slice's size (rows, positives, distinct items and users, GAUC's users), from the cells'
    test metrics; a size that differs between cells shows its range; "–" where a cell predates the figure."""
    sizes: dict[str, dict[str, set[float]]] = defaultdict(lambda: defaultdict(set))
    for c in cells:
        for slice_name, m in c.test.items():
            got = sizes[slice_name]
            for key, _ in SIZE_KEYS:
                if m.get(key) is not None:
                    got[key].add(float(m[key]))
    if not any(k for v in sizes.values() for k in v.values()):
        return ""
    lines = ["| slice | " + " | ".join(label for _, label in SIZE_KEYS) + " |", "|---" * (len(SIZE_KEYS) + 1) + "|"]
    for slice_name in slice_order(sizes):
        vals = []
        for key, _ in SIZE_KEYS:
            v = sorted(sizes[slice_name][key])
            vals.append("–" if not v else f"{int(v[0]):,}" if len(v) == 1 else f"{int(v[0]):,}–{int(v[-1]):,}")
        lines.append(f"| {slice_name} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def _delta(r: dict[str, Any], key: str = "delta_vs_id_only", holm_key: str = "p_value_holm") -> str:
    if r.get(key) is None:
        return "–"
    ci = f" [{r['delta_ci_low']:+.4f}, {r['delta_ci_high']:+.4f}]" if key == "delta_vs_id_only" and \
        r.get("delta_ci_low") is not None else ""
    return f"{r[key]:+.4f}{ci}{' †' if significant(r, holm_key) else ''}"


def metrics_table(rows: list[dict[str, Any]], variants_order: Sequence[str]) -> str:
    """Markdown: one line per (model, variant, slice): AUC/GAUC/LogLoss as mean ± std [CI] over seeds, each
    seed's test-set (user bootstrap) AUC interval, Δ AUC vs id_only [CI] with its raw and Holm-adjusted p (†: Holm < 0.05)."""
    idx = {(r["model"], r["variant"], r["slice"], r["metric"]): r for r in rows}
    variants = [v for v in variants_order if any(r["variant"] == v for r in rows)]
    lines = ["| model | variant | slice | AUC | AUC test-set CI per seed | GAUC | LogLoss | Δ AUC vs id_only [CI] | p | "
             "p (Holm) | seeds | modalities |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for model in model_order(r["model"] for r in rows):
        for variant in variants:
            for slice_name in MAIN_SLICES:
                cells = [idx.get((model, variant, slice_name, m)) for m in METRICS]
                if all(c is None for c in cells):
                    continue
                parts = [ci_text(c) for c in cells]
                auc = cells[0] or {}
                boot = per_cell_bootstrap_text(auc)
                lines.append(f"| {model} | {variant} | {slice_name} | {parts[0]} | {boot} | {parts[1]} | {parts[2]} | "
                             f"{_delta(auc)} | {fmt(auc.get('p_value'), 3)} | {fmt(auc.get('p_value_holm'), 3)} | "
                             f"{auc.get('n_seeds', 0)} | {auc.get('modalities') or '–'} |")
    return "\n".join(lines)


def frozen_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: each aligned variant against its frozen counterpart, AUC, per model and main slice."""
    lines = ["| model | slice | comparison | Δ AUC | p | p (Holm) |", "|---|---|---|---|---|---|"]
    for model in model_order(r["model"] for r in rows):
        for slice_name in MAIN_SLICES:
            for variant, counterpart in COUNTERPART.items():
                r = next((r for r in rows if (r["model"], r["variant"], r["slice"], r["metric"]) ==
                          (model, variant, slice_name, "auc")), None)
                if r is None or r["delta_vs_frozen"] is None:
                    continue
                lines.append(f"| {model} | {slice_name} | {variant} vs {counterpart} | "
                             f"{_delta(r, 'delta_vs_frozen', 'p_value_vs_frozen_holm')} | "
                             f"{fmt(r['p_value_vs_frozen'], 3)} | {fmt(r['p_value_vs_frozen_holm'], 3)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def parameters_table(cells: Sequence[CellRecord], variants_order: Sequence[str]) -> str:
    """Markdown: every (model, variant)'s embedding and dense parameter counts (the same for every seed)."""
    seen: dict[tuple[str, str], CellRecord] = {}
    for c in cells:
        seen.setdefault((c.model, c.variant), c)
    known = ("dlrm", "din", "sim")
    lines = ["| model | variant | embedding parameters | dense parameters | total |", "|---|---|---|---|---|"]
    for (model, variant), c in sorted(seen.items(), key=lambda kv: (
            known.index(kv[0][0]) if kv[0][0] in known else 9, list(variants_order).index(kv[0][1])
            if kv[0][1] in variants_order else 99)):
        lines.append(f"| {model} | {variant} | {c.n_embedding_parameters:,} | {c.n_dense_parameters:,} | "
                     f"{c.n_embedding_parameters + c.n_dense_parameters:,} |")
    return "\n".join(lines)


def replicate_statement(results: SuiteResults) -> str:
    """What varied across seeds and what stayed fixed (from the config and the cells' replicate seeds), then how
    the item side was built (item_side_statement)."""
    cfg = results.config
    split = cfg.get("data", {}).get("split", {})
    split_seeds = list(split.get("seeds", ()))
    split_seed = f"data.split.seeds = {split_seeds}" if split_seeds else f"data.split.seed = {split.get('seed', '?')}"
    reps = sorted({c.replicate_seed for c in results.cells})
    if cfg.get("suite", {}).get("replicate") == "full" and len(reps) > 1:
        out = (f"Seeds replicate the whole pipeline (suite.replicate = full): pair sampling, the U2I model, "
               f"alignment, every quantizer and the rankers take the seed (item-side seeds {reps}). Fixed across "
               f"seeds: the data split and the cold-item draw ({split_seed}) and the frozen encoder.")
    else:
        out = (f"Seeds replicate the rankers only: one item side (pairs, U2I, alignment, codes) seeded by {reps}, "
               f"the split and the cold-item draw ({split_seed}) fixed; the intervals are "
               "conditional on that one alignment and codebook.")
    if len(split_seeds) > 1:
        zipped = split.get("seed_pairing") == "zipped"
        out += (f" Split seeds are an outer loop: each of {split_seeds} draws its own split and cold items, and "
                + ("runs the replicate seed paired with it (data.split.seed_pairing = zipped: every replicate its "
                   "own split)" if zipped else "every replicate runs within each")
                + " (CellRecord.split_seed; data statistics per split seed in results.json). The statistics take "
                "the split seed as their unit, its replicates averaged.")
    return f"{out} {item_side_statement(cfg)}"


def item_side_statement(cfg: dict[str, Any]) -> str:
    """How the item side was built (quantize.fit_on, align.refit), from the resolved config."""
    fit_on = cfg.get("quantize", {}).get("fit_on", "all")
    refit = cfg.get("align", {}).get("refit", False)
    codes = ("Codebooks were fitted on the warm items (a training impression) and every item, cold ones "
             "included, was encoded against them (quantize.fit_on = warm)" if fit_on == "warm" else
             "Codebooks were fitted on every item's embedding, cold items included (quantize.fit_on = all: not "
             "deployment-faithful)")
    head = ("the aligned model was refit on all alignment pairs (train + validation + test) for the epoch count "
            "chosen on the validation pairs, and the codes and rankers read the refit's embedding; the held-out "
            "pair recall figures are the validation-selected model's on the test pairs, before the refit "
            "(align.refit = true)" if refit else
            "the codes and rankers read the validation-selected aligned model, trained on the training pairs only "
            "(align.refit = false)")
    return f"{codes}; {head}."


def invocation_statement(results: SuiteResults) -> str:
    """The header line saying which invocation this is, and whether it was --quick or changed settings with
    --set (each overridden key with its value); "" for a manifest from before run folders."""
    if not (results.run_id or results.quick or results.overrides):
        return ""
    parts = ["**--quick** (first seed, fewer epochs: a first look, not the suite's result)"] if results.quick else []
    if results.overrides:
        parts.append(f"{len(results.overrides)} setting(s) overridden"
                     f"{' by --set and --quick' if results.quick else ' by --set'}: "
                     + ", ".join(f"`{k}={v}`" for k, v in results.overrides.items()))
    return f"Run {results.run_id or '–'}: {'; '.join(parts) or 'the suite as packaged (no --quick, no --set)'}."


def sim_statement(cells: Sequence[CellRecord]) -> str:
    """How SIM's search unit was set in this suite (every SIM variant's mode and searched code set)."""
    modes = sorted({(c.sim_search, c.sim_search_codes) for c in cells if c.model == "sim"}, key=str)
    if not modes:
        return ""
    if len(modes) == 1:
        mode, codes = modes[0]
        return f"SIM search unit: {mode}{f' on {codes}' if codes else ''} for every variant."
    per = sorted({(c.variant, c.sim_search, c.sim_search_codes) for c in cells if c.model == "sim"})
    return "SIM search unit per variant (it differs, so SIM's deltas mix features and search): " + "; ".join(
        f"{v}: {m}{f' on {cs}' if cs else ''}" for v, m, cs in per) + "."


def token_table(results: SuiteResults) -> str:
    """Markdown: per code set the variants read, the token coverage of the cold test items (first replicate)."""
    if not results.item_side or not results.item_side[0].token_coverage:
        return ""
    lines = ["| code set | tokenisation | coverage per table | overall | cold test items |", "|---|---|---|---|---|"]
    for name, c in sorted(results.item_side[0].token_coverage.items()):
        per = ", ".join(f"{t} {fmt(v, 3)}" for t, v in zip(c["tables"], c["coverage"]))
        lines.append(f"| {name} | {c['scheme']} | {per} | {fmt(c['overall'], 3)} | {c['n_query_items']} |")
    return "\n".join(lines)


def code_quality_table(code_quality: dict[str, dict[str, Any]]) -> str:
    lines = ["| code set | collision rate | duplicate-embedding floor | items per code | unique codes | "
             "utilisation per level | perplexity per level | recon. MSE per level | HR@10 (prefix 1) |",
             "|---|---|---|---|---|---|---|---|---|"]

    def lst(v: Any) -> str:
        return "–" if not v else ", ".join(f"{x:.3f}" for x in v)

    for name, d in sorted(code_quality.items()):
        hr = d.get("neighbour_hr")
        hr = hr[0] if hr else None
        lines.append(f"| {name} | {fmt(d.get('collision_rate'), 3)} | {fmt(d.get('duplicate_rate'), 3)} | "
                     f"{fmt(d.get('mean_items_per_code'), 2)} | "
                     f"{d.get('n_unique_codes', '–')} | {lst(d.get('utilisation'))} | {lst(d.get('perplexity'))} | "
                     f"{lst(d.get('reconstruction_mse'))} | {fmt(hr, 3)} |")
    return "\n".join(lines)


def code_quality(results: SuiteResults) -> dict[str, dict[str, Any]]:
    """Diagnostics of the residual code sets (kind "rq") of the first replicate, by code set name."""
    if not results.item_side:
        return {}
    return {cs.name: cs.diagnostics for cs in results.item_side[0].code_sets if cs.kind == "rq"}


def environment_statement(env: dict[str, Any]) -> str:
    """One paragraph: the hardware and math stack of the run (Provenance.environment); "" when not recorded."""
    if not env:
        return ""
    versions = ", ".join(f"{k} {v}" for k, v in sorted((env.get("versions") or {}).items()))
    blas = []
    for ln in str(env.get("torch_config", "")).splitlines():
        ln = ln.strip(" -")
        if ln.startswith("Build settings:"):  # keep the math libraries of the long build line
            blas += [kv.strip() for kv in ln.split(":", 1)[1].split(",")
                     if kv.strip().startswith(("BLAS_INFO=", "LAPACK_INFO=", "USE_MKLDNN="))]
        elif any(w in ln for w in ("Math Kernel", "MKL-DNN", "oneDNN", "OpenMP", "LAPACK", "BLAS")):
            blas.append(ln)
    return (f"Environment: CPU {env.get('cpu', '?')} ({env.get('cpu_count', '?')} cores); GPU "
            f"{env.get('gpu') or 'none'}; device {env.get('device') or '?'}; torch threads "
            f"{env.get('torch_threads', '?')} (inter-op {env.get('torch_interop_threads', '?')}) x "
            f"{env.get('workers', '?')} worker(s), OMP_NUM_THREADS={env.get('omp_num_threads') or 'unset'}; oneDNN "
            f"{'available' if env.get('mkldnn') else 'unavailable'}; torch built with: {'; '.join(blas) or '?'}; "
            f"{versions}; Python {env.get('python', '?')}. Figures reproduce bit for bit on the same CPU model, "
            "library versions and thread counts; elsewhere within noise (docs/results.md).")


def render_markdown(results: SuiteResults, rows: list[dict[str, Any]], primary: PrimaryFamily | None = None) -> str:
    """The report: the primary family first (when the suite has one), then everything else, exploratory."""
    prov = results.provenance
    stats = results.data_stats
    variants_order = results.variants
    title = f"{results.suite} [{results.label}]" if results.label else results.suite
    out = [f"# QARM-Bench report: {title}", ""]
    if primary is not None:
        out += ["## Primary hypothesis", "", render_primary(primary), "", power_statement(primary), ""]
    out += [f"> {w}\n" for w in (smoke_note(prov.dataset), small_n_warning(rows)) if w]
    out.append(f"Provenance: config {prov.config_hash} · git {prov.git_sha} · dataset {prov.dataset} "
               f"({prov.dataset_fingerprint}) · split {prov.split} · seeds {list(prov.seeds)} · {prov.date}")
    env = environment_statement(prov.environment)
    if env:
        out += ["", env]
    out += ["", replicate_statement(results)]
    if invocation_statement(results):
        out[2:2] = [invocation_statement(results), ""]
    if stats:
        out.append("")
        out.append(f"Data: {stats.get('users', '?')} users, {stats.get('items', '?')} items, "
                   f"{stats.get('impressions', '?')} impressions; train/val/test {stats.get('train', '?')}/"
                   f"{stats.get('val', '?')}/{stats.get('test', '?')}; cold items (no training impression) "
                   f"{stats.get('cold_items', '?')} (of which the seeded cold draw {stats.get('cold_items_drawn', '?')}), "
                   f"warm items {stats.get('warm_items', '?')}; cold-user share of test rows "
                   f"{fmt(stats.get('cold_user_share_test'), 3)}.")
    fams = sorted({r["holm_family_size"] for r in rows if r["holm_family_size"]})
    sim = sim_statement(results.cells)
    out += ["", "## Variants", "", *variant_legend(results)]
    out += ["", "## Ranking metrics (exploratory; test, at the best validation epoch)", "",
            f"Exploratory. mean ± std [{int(100 * results.confidence)}% CI] over seeds. AUC test-set CI per seed: "
            "the user-level bootstrap interval of each seed's test AUC (test-set uncertainty of one cell; "
            "report.json's bootstrap_ci_low/high is their envelope). Δ: paired over seeds against "
            "id_only, with its t interval; p: paired t-test (– under 2 seeds); p (Holm): adjusted within one "
            f"family per model × slice × metric (family size {', '.join(map(str, fams)) or '–'}). † marks the "
            "only deltas called significant: Holm-adjusted p < 0.05. n=1: one seed, no interval. "
            f"{UNDEFINED}: no value on that slice (AUC: one label class; GAUC: no user with both labels; see "
            "Slices).", ""]
    if sim:
        out += [sim, ""]
    out.append(metrics_table(rows, variants_order))
    st = slices_table(results.cells)
    if st:
        out += ["", "## Slices", "", "The size of each test slice (the same for every cell of a seed; a range when it "
                "differs between cells). A figure on a slice of a few users or items is a figure about them.", "", st]
    ft = frozen_table(rows)
    if ft:
        out += ["", "## Aligned vs frozen (exploratory)", "",
                "Each aligned variant against its frozen counterpart, AUC, paired over seeds; Holm within each "
                "model × slice × metric over these comparisons (exploratory: the primary family above is the "
                "test of QARM's claim).", "", ft]
    out += ["", "## Parameters", "", "Embedding rows x D summed over every table, and the dense parameters "
            "(MLPs, attention, projections), per variant: a gain that comes with more parameters may be capacity, "
            "not content (compare random_codes / shuffled_codes).", "", parameters_table(results.cells, variants_order)]
    cq = code_quality(results)
    if cq:
        out += ["", "## Code quality", "", "Residual code sets of the first replicate: the suite's quantizers on "
                "the frozen and the aligned embedding, and RQ-Kmeans with TIGER's dedup suffix (.dedup), QARM V2's "
                "FSQ last level (.fsq) and OneRec's balanced k-means (.balanced). The duplicate-embedding floor is "
                "the share of items whose embedding another item has bit for bit: no quantizer separates them.",
                "", code_quality_table(cq)]
    tt = token_table(results)
    if tt:
        out += ["", "## Code tokens", "", "How the codes become embedding-table tokens (quantize.tokens), and the "
                "share of the cold test items' tokens that some training item also has: a token no training item "
                "has is a row the ranker never trained, so long n-grams and SentencePiece pieces can be "
                "near-unique per item on a small catalogue.", "", tt]
    if results.item_side:
        out += ["", "## Alignment", ""]
        for rep in results.item_side:
            a, ps = rep.alignment, rep.pair_stats
            out.append(f"- replicate seed {rep.seed}: held-out test pair recall@{a.k} (split by {a.split}, "
                       f"{a.n_test_pairs} test pairs, never used for a choice): frozen {fmt(a.frozen_recall, 3)} "
                       f"→ aligned {fmt(a.aligned_recall, 3)} (kept epoch {a.best_epoch}; {ps.n_pairs} pairs; "
                       f"{', '.join(ps.sources)}; trained: {a.trained}; modalities: "
                       f"{' + '.join(a.modalities) or '–'}).")
        first = results.item_side[0].alignment.references
        if first is not None:
            from qarm.alignment.records import render_references

            out += ["", render_references(first, f"replicate seed {results.item_side[0].seed}").rstrip()]
    if results.plots:
        out += ["", "## Plots", ""] + [f"- `{p}`" for p in results.plots]
    return "\n".join(out) + "\n"


def variant_legend(results: SuiteResults) -> list[str]:
    """One line per variant of the suite: what it feeds the ranker, and for the aligned ones what alignment
    trained ("aligned head": a head over the frozen encoder, or "aligned encoder (...)": blocks fine-tuned)."""
    names = list(dict.fromkeys(c.variant for c in results.cells))
    a = results.item_side[0].alignment if results.item_side else None
    trained = f"{a.trained_short}: {a.trained}" if a is not None and a.trained_short else (a.trained if a else "")
    out = []
    for name in names:
        v = find_variant(name)
        if v is None:
            continue
        line = f"- `{name}`: {v.description}"
        if v.content_source == "aligned" and trained:
            line += f" (aligned = {trained})"
        out.append(line + ".")
    return out
