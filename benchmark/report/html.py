"""`report.html`: the suite report as one self-contained page (no external assets; works offline).

    primary hypothesis ─ headline deltas (exploratory) ─ forest plot ─ ranking table ─ other plots ─ code quality
    ─ alignment ─ data ─ provenance (with the hardware and math stack)

PNG plots are embedded as base64 `data:` URIs, styles are inline, there is no script: the file can be mailed,
opened from disk, or viewed in MLflow's artifact viewer (it is logged to the suite's parent run).
Input: the manifest (benchmark.core.records.SuiteResults, with `plots` relative to the suite folder) and the
`report.aggregate` rows.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.core.records import SuiteResults
from benchmark.report.headline import headline_items, significance_key, significance_label
from benchmark.report.primary import PrimaryFamily, family_statement, power_statement
from benchmark.report.stats import ALPHA
from benchmark.report.tables import (
    BASELINE,
    MAIN_SLICES,
    METRICS,
    code_quality,
    invocation_statement,
    replicate_statement,
    sim_statement,
)

FOREST_FIRST = "plots/forest_auc.png"  # the picture a reader looks at first
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
     padding:0 1rem;color:#1f2328}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem;
     margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:12.5px} th,td{border:1px solid #d0d7de;padding:3px 7px;
     text-align:right;white-space:nowrap} th{background:#f6f8fa} td.l,th.l{text-align:left}
tr.sig td{background:#fff5f5} .gain{color:#1a7f37;font-weight:600} .loss{color:#cf222e;font-weight:600}
.muted{color:#656d76} figure{margin:1rem 0} figure img{max-width:100%;border:1px solid #d0d7de}
figcaption{color:#656d76;font-size:12px} code{background:#f6f8fa;padding:0 3px}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:0 1.5rem;align-items:start}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: float | None, digits: int = 4, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _table(header: Sequence[str], body: Sequence[Sequence[str]], left: int = 1,
           row_classes: Sequence[str] = ()) -> str:
    """An HTML table; cells are pre-escaped strings; the first `left` columns are left-aligned."""
    th = "".join(f'<th class="{"l" if i < left else ""}">{h}</th>' for i, h in enumerate(header))
    trs = []
    for n, row in enumerate(body):
        cls = f' class="{row_classes[n]}"' if n < len(row_classes) and row_classes[n] else ""
        tds = "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(row))
        trs.append(f"<tr{cls}>{tds}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(trs)}</tbody></table>"


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def headline_section(rows: list[dict[str, Any]], variants: Sequence[str], confidence: float) -> str:
    items = headline_items(rows, variants)
    if not items:
        return f"<p>No {BASELINE} variant (or no other variant) in this suite: no deltas to report.</p>"
    body, classes = [], []
    for h in items:
        css = "gain" if h.verdict == "significant gain" else "loss" if h.verdict == "significant loss" else "muted"
        ci = "–" if h.ci_low is None else f"[{_num(h.ci_low, signed=True)}, {_num(h.ci_high, signed=True)}]"
        body.append([_e(h.model), _e(h.variant), _e(h.slice), _num(h.delta, signed=True), ci, _num(h.p, 3),
                     f'<span class="{css}">{_e(h.verdict)}</span>', str(h.n_seeds)])
        classes.append("sig" if h.verdict.startswith("significant") else "")
    note = (f"<p class=muted>Δ = mean over seeds of (variant − {BASELINE}) test AUC, paired by seed; "
            f"{round(100 * confidence)}% t interval; significance by {_e(significance_label(rows))} &lt; {ALPHA}. "
            "A delta is never called a gain unless that p is below the threshold.</p>")
    return note + _table(["model", "variant", "slice", "Δ AUC", f"{round(100 * confidence)}% CI of Δ", "p",
                          "verdict", "seeds"], body, left=3, row_classes=classes)


def metrics_section(rows: list[dict[str, Any]], variants: Sequence[str]) -> str:
    idx = {(r["model"], r["variant"], r["slice"], r["metric"]): r for r in rows}
    key = significance_key(rows)
    models = [m for m in ("dlrm", "din", "sim") if any(r["model"] == m for r in rows)]
    models += sorted({r["model"] for r in rows} - set(models))
    order = [v for v in variants if any(r["variant"] == v for r in rows)]
    order += sorted({r["variant"] for r in rows} - set(order))
    body = []
    for model in models:
        for variant in order:
            for s in MAIN_SLICES:
                cells = [idx.get((model, variant, s, m)) for m in METRICS]
                if all(c is None for c in cells):
                    continue
                vals = ["–" if c is None or c["mean"] is None else
                        f"{c['mean']:.4f} ± {c['std']:.4f} [{c['ci_low']:.4f}, {c['ci_high']:.4f}]" for c in cells]
                auc = cells[0] or {}
                dci = ("–" if auc.get("delta_ci_low") is None else
                       f"[{_num(auc['delta_ci_low'], signed=True)}, {_num(auc['delta_ci_high'], signed=True)}]")
                body.append([_e(model), _e(variant), _e(s), *vals, _num(auc.get("delta_vs_id_only"), signed=True), dci,
                             _num(auc.get(key), 3), str(auc.get("n_seeds", 0))])
    return _table(["model", "variant", "slice", "AUC", "GAUC", "LogLoss", "Δ AUC", "CI of Δ AUC",
                   "Holm p" if key == "p_value_holm" else "p", "seeds"], body, left=3)


def code_quality_section(code_quality: dict[str, dict[str, Any]]) -> str:
    def lst(v: Any) -> str:
        return "–" if not v else ", ".join(f"{x:.3f}" for x in v)

    body = []
    for name, d in sorted(code_quality.items()):
        hr = d.get("neighbour_hr")
        hr = hr[0] if hr else None
        body.append([_e(name), _num(d.get("collision_rate"), 3), _num(d.get("mean_items_per_code"), 2),
                     _e(d.get("n_unique_codes", "–")), lst(d.get("utilisation")), lst(d.get("perplexity")),
                     lst(d.get("reconstruction_mse")), _num(hr, 3)])
    return _table(["code set", "collision rate", "items per code", "unique codes", "utilisation per level",
                   "perplexity per level", "recon. MSE per level", "HR@10 (prefix 1)"], body)


def primary_section(family: PrimaryFamily) -> str:
    """The primary family: its statement (size first), one row per test, and the power statement."""
    body, classes = [], []
    for r in family.records:
        ci = "–" if r.ci_low is None else f"[{_num(r.ci_low, signed=True)}, {_num(r.ci_high, signed=True)}]"
        boot = "–" if r.bootstrap_ci_low is None else (
            f"[{_num(r.bootstrap_ci_low, signed=True)}, {_num(r.bootstrap_ci_high, signed=True)}] p "
            f"{_num(r.bootstrap_p, 3)}{' (users × items)' if r.bootstrap_two_way else ''}")
        css = r.verdict if r.verdict in ("gain", "loss") else "muted"
        need = "–" if r.sd is None else (f"&gt; {family.hypothesis.replicates_cap}" if r.replicates_needed is None
                                         else str(r.replicates_needed))
        body.append([_e(r.model), _e(r.slice), _e(f"{r.variant} vs {r.baseline}"), str(len(r.seeds)),
                     _num(r.delta, signed=True), ci, _num(r.p, 3), _num(r.p_holm, 3), _num(r.tost_p, 3),
                     f'<span class="{css}">{_e(r.verdict)}</span>', boot,
                     f"{_num(r.mde)} [{_num(r.mde_low)}, {_num(r.mde_high)}]", f"{need} (for {r.target_effect:+g})"])
        classes.append("sig" if r.verdict in ("gain", "loss") else "")
    table = _table(["model", "slice", "contrast", "seeds", "Δ AUC", f"{1 - family.hypothesis.alpha:.0%} t CI", "p",
                    "Holm p", "TOST p", "verdict", "bootstrap CI, p", "MDE [range]", "replicates for target"],
                   body, left=3, row_classes=classes)
    return (f"<p>{_e(family_statement(family)).replace('**', '')}</p>" + table
            + f"<p><b>{_e(power_statement(family).replace('**', ''))}</b></p>")


def environment_rows(env: dict[str, Any]) -> list[tuple[str, Any]]:
    """The hardware and math stack (Provenance.environment) as (field, value) rows."""
    rows = [(k, env[k]) for k in ("cpu", "cpu_count", "gpu", "device", "torch_threads", "torch_interop_threads",
                                  "workers", "omp_num_threads", "mkl_num_threads", "mkldnn", "mkl", "python",
                                  "platform") if k in env]
    rows += [(f"version: {k}", v) for k, v in sorted((env.get("versions") or {}).items())]
    if env.get("torch_config"):
        rows.append(("torch.__config__.show()", env["torch_config"]))
    return rows


def provenance_section(results: SuiteResults) -> str:
    prov = results.provenance
    fields = [("config_hash", prov.config_hash), ("git_sha", prov.git_sha), ("version", prov.version),
              ("dataset", prov.dataset), ("dataset_fingerprint", prov.dataset_fingerprint), ("split", prov.split),
              ("seeds", list(prov.seeds)), ("date", prov.date), *environment_rows(prov.environment)]
    for rep in results.item_side:
        fields += [(f"replicate {rep.seed} stage key: {k}", v) for k, v in sorted(rep.stage_keys.items())]
    return _table(["field", "value"], [[_e(k), f"<code>{_e(v)}</code>"] for k, v in fields], left=2)


def render_html(results: SuiteResults, rows: list[dict[str, Any]], suite_dir: Path,
                primary: PrimaryFamily | None = None) -> str:
    """The whole page as a string; plots are read from `suite_dir / results.plots[i]` when present; the primary
    family (when given) comes first."""
    suite = f"{results.suite} [{results.label}]" if results.label else results.suite
    variants = results.variants or sorted({r["variant"] for r in rows})
    confidence = results.confidence
    description = (results.config.get("suite") or {}).get("description", "")
    plots = [p for p in results.plots if (suite_dir / p).is_file()]
    plots.sort(key=lambda p: p != FOREST_FIRST)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>QARM-Bench report: {_e(suite)}</title><style>{STYLE}</style></head><body>",
           f"<h1>QARM-Bench report: {_e(suite)}</h1>"]
    invocation = invocation_statement(results)
    if invocation:  # --quick / --set: said at the top, every overridden key with its value
        out.append(f"<p><strong>{_e(invocation.replace('**', '').replace('`', ''))}</strong></p>")
    if primary is not None:
        out += ["<h2>Primary hypothesis</h2>", primary_section(primary)]
    if description:
        out.append(f"<p>{_e(description)}</p>")
    prov = results.provenance
    out.append(f"<p class=muted>config {_e(prov.config_hash)} · git {_e(prov.git_sha)} · dataset {_e(prov.dataset)} "
               f"· split {_e(prov.split)} · seeds {_e(list(prov.seeds))} · {_e(prov.date)}</p>")
    out.append(f"<p>{_e(replicate_statement(results))}</p>")
    out += ["<h2>Headline (exploratory): Δ test AUC vs id_only</h2>", headline_section(rows, variants, confidence)]
    if plots and plots[0] == FOREST_FIRST:
        out.append(_figure(suite_dir / plots.pop(0), "Δ test AUC vs id_only per variant, model and slice"))
    sim = sim_statement(results.cells)
    out += ["<h2>Ranking metrics (exploratory; test, at the best validation epoch)</h2>",
            f"<p class=muted>mean ± std [{round(100 * confidence)}% CI] over seeds; Δ and p paired over seeds against "
            f"{BASELINE}; Holm-adjusted within each model × slice × metric; – under 2 seeds.</p>",
            *([f"<p>{_e(sim)}</p>"] if sim else []), metrics_section(rows, variants)]
    if plots:
        out += ["<h2>Plots</h2>", '<div class="plots">',
                *[_figure(suite_dir / p, Path(p).stem.replace("_", " ")) for p in plots], "</div>"]
    cq = code_quality(results)
    if cq:
        out += ["<h2>Code quality</h2>", code_quality_section(cq)]
    if results.item_side:
        out.append("<h2>Alignment</h2>")
        for rep in results.item_side:
            a, ps = rep.alignment, rep.pair_stats
            out.append(f"<p>Replicate seed {rep.seed}: held-out pair recall@{a.k}: frozen {_num(a.frozen_recall, 3)} "
                       f"→ aligned {_num(a.aligned_recall, 3)} ({ps.n_pairs} pairs; {_e(', '.join(ps.sources))}; "
                       f"trained: {_e(a.trained)}).</p>")
    stats = results.data_stats or {}
    if stats:
        out += ["<h2>Data</h2>", _table(["statistic", "value"], [[_e(k), _e(v)] for k, v in sorted(stats.items())
                                                                  if isinstance(v, int | float | str)])]
    out += ["<h2>Provenance</h2>", provenance_section(results), "</body></html>"]
    return "\n".join(out) + "\n"


def write_html(suite_dir: Path, results: SuiteResults, rows: list[dict[str, Any]],
               primary: PrimaryFamily | None = None) -> Path:
    """Write `suite_dir/report.html` atomically (next to report.md); returns its path."""
    path = suite_dir / "report.html"
    tmp = suite_dir / ".report.html.tmp"
    tmp.write_text(render_html(results, rows, suite_dir, primary), encoding="utf-8")
    tmp.replace(path)
    return path
