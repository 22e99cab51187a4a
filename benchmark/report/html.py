"""`report.html`: the suite report as one self-contained page (no external assets; works offline).

    notes ─ headline deltas ─ forest plot ─ every section of report.md (variants, ranking table, slices, aligned vs
    frozen, parameters, code quality, code tokens, alignment and its references) ─ plots ─ data ─ provenance

The sections of report.md are rendered from its markdown (benchmark.report.mdhtml), so both carry the same
numbers in the same format. Plots are full width; a click enlarges one to the window (a checkbox, no script).

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
from benchmark.report.headline import headline_items, significance_label
from benchmark.report.mdhtml import inline, sections, to_html
from benchmark.report.primary import results_family
from benchmark.report.stats import ALPHA
from benchmark.report.tables import (
    BASELINE,
    invocation_statement,
    render_markdown,
    replicate_statement,
    small_n_warning,
    smoke_note,
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
.muted{color:#656d76} figure{margin:1rem 0} figure img{width:100%;border:1px solid #d0d7de;cursor:zoom-in}
figcaption{color:#656d76;font-size:12px} code{background:#f6f8fa;padding:0 3px}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:.4rem .7rem}
input.zoom{display:none} input.zoom:checked+img{position:fixed;inset:0;width:100vw;height:100vh;object-fit:contain;
     background:#fff;z-index:10;border:0;cursor:zoom-out}
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
    """A full-width embedded PNG; a click enlarges it to the window, another restores it."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><label><input type="checkbox" class="zoom"><img src="data:image/png;base64,{data}" '
            f'alt="{_e(caption)}" title="click to enlarge"></label><figcaption>{_e(caption)}</figcaption></figure>')


def _value(v: Any) -> str:
    """A data statistic as the markdown prints numbers: integers with separators, fractions to 4 digits."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return _e(v)
    if isinstance(v, int) or float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:.4f}"


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


def render_html(results: SuiteResults, rows: list[dict[str, Any]], suite_dir: Path) -> str:
    """The whole page as a string; plots are read from `suite_dir / results.plots[i]` when present."""
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
    sections_md = sections(render_markdown(results, rows, results_family(results)))[1:]
    for heading, body in sections_md:  # the declared primary family comes first, before anything exploratory
        if heading == "Primary hypothesis":
            out.append(to_html(f"## {heading}\n{body}"))
    if description:
        out.append(f"<p>{_e(description)}</p>")
    prov = results.provenance
    out += [f'<p class="note">{inline(n)}</p>' for n in (smoke_note(prov.dataset), small_n_warning(rows)) if n]
    out.append(f"<p class=muted>config {_e(prov.config_hash)} · git {_e(prov.git_sha)} · dataset {_e(prov.dataset)} "
               f"· split {_e(prov.split)} · seeds {_e(list(prov.seeds))} · {_e(prov.date)}</p>")
    out.append(f"<p>{_e(replicate_statement(results))}</p>")
    out += ["<h2>Headline (exploratory): Δ test AUC vs id_only</h2>", headline_section(rows, variants, confidence)]
    if plots and plots[0] == FOREST_FIRST:
        out.append(_figure(suite_dir / plots.pop(0), "Δ test AUC vs id_only per variant, model and slice"))
    for heading, body in sections_md:  # the markdown's sections, same numbers
        if heading not in ("Plots", "Primary hypothesis"):
            out.append(to_html(f"## {heading}\n{body}"))
    if plots:
        out += ["<h2>Plots</h2>", *[_figure(suite_dir / p, Path(p).stem.replace("_", " ")) for p in plots]]
    stats = results.data_stats or {}
    if stats:
        out += ["<h2>Data</h2>", _table(["statistic", "value"], [[_e(k), _value(v)] for k, v in sorted(stats.items())
                                                                  if isinstance(v, int | float | str)])]
    out += ["<h2>Provenance</h2>", provenance_section(results), "</body></html>"]
    return "\n".join(out) + "\n"


def write_html(suite_dir: Path, results: SuiteResults, rows: list[dict[str, Any]]) -> Path:
    """Write `suite_dir/report.html` atomically (next to report.md); returns its path."""
    path = suite_dir / "report.html"
    tmp = suite_dir / ".report.html.tmp"
    tmp.write_text(render_html(results, rows, suite_dir), encoding="utf-8")
    tmp.replace(path)
    return path
