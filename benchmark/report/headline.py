"""The headline: the primary family first (its size, each declared contrast's verdict, and whether the suite can
detect its target effect), then, exploratory, each variant against id_only on the all and cold slices (test AUC)
with its interval, its Holm-adjusted p-value and a verdict — the MLflow parent run's description and the top of
report.html.

A delta is called a gain (or a loss) only when its Holm-adjusted p-value is below ALPHA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmark.report.primary import PrimaryFamily, power_statement
from benchmark.report.stats import ALPHA, fmt_p
from benchmark.report.tables import BASELINE, fmt, model_order, signed, small_n_warning, smoke_note

HEADLINE_VARIANT = "aligned_codes"  # the QARM variant (aligned encoder -> RQ codes)
HEADLINE_SLICES = ("all", "cold")


def significance_key(rows: Sequence[dict[str, Any]]) -> str:
    """The p-value that decides significance: 'p_value_holm' when the rows carry it, else the unadjusted 'p_value'.

    The report's rule: only Holm-significant deltas are called significant; rows made before Holm adjustment existed
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
    for model in model_order(r["model"] for r in rows):
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
                    metric: str = "auc", dataset: str = "") -> str:
    """Markdown: per model, each variant vs id_only on all/cold test AUC: Δ, its CI, p and a verdict; the synthetic
    data's "smoke test, not evidence" line right under the headline's title, the small-n warning at its end.

    A delta is called a gain only when its (Holm-adjusted when the rows carry it) p is below ALPHA.
    """
    smoke, small = smoke_note(dataset), small_n_warning(rows)
    if not any(r["variant"] == BASELINE for r in rows):
        return "\n\n".join(n for n in (f"No {BASELINE} variant in this suite: no deltas to report.", smoke, small) if n)
    lines = [f"**Headline: Δ test {metric.upper()} vs {BASELINE}** (mean of per-seed differences, "
             f"{round(100 * confidence)}% CI, {significance_label(rows)}; significant when p < {ALPHA}):", ""]
    lines += [smoke, ""] if smoke else []
    for h in headline_items(rows, variants, metric):
        ci = "" if h.ci_low is None else f" [{signed(h.ci_low)}, {signed(h.ci_high)}]"
        lines.append(f"- {h.model} · {h.variant} · {h.slice}: Δ {signed(h.delta)}{ci}, p = {fmt(h.p, 3)}: "
                     f"{h.verdict} ({h.n_seeds} seeds)")
    return "\n".join(lines + (["", small] if small else []))


def primary_headline(family: PrimaryFamily) -> str:
    """Markdown: the primary family and its size, one line per test (Δ, t interval, Holm p, bootstrap interval,
    verdict), then whether the suite can detect its target effect."""
    h = family.hypothesis
    lines = [f"**Primary hypothesis** ({h.metric.upper()}; one Holm family of m = {family.size} tests at "
             f"α = {h.alpha}; equivalence margin ±{h.equivalence_margin}):", ""]
    for r in family.records:
        ci = "" if r.ci_low is None else f" [{signed(r.ci_low)}, {signed(r.ci_high)}]"
        boot = "" if r.bootstrap_ci_low is None else \
            f", bootstrap [{signed(r.bootstrap_ci_low)}, {signed(r.bootstrap_ci_high)}] p {fmt_p(r.bootstrap_p, h.alpha)}"
        lines.append(f"- {r.model} · {r.slice} · {r.variant} vs {r.baseline}: Δ {signed(r.delta)}{ci}, Holm p = "
                     f"{fmt_p(r.p_holm, h.alpha)}{boot}: **{r.verdict}** (MDE {fmt(r.mde)}, target {r.target_effect:g})")
    return "\n".join([*lines, "", power_statement(family)])


def parent_run_description(description: str, rows: Sequence[dict[str, Any]], variants: Sequence[str] = (),
                           confidence: float = 0.95, primary: PrimaryFamily | None = None,
                           dataset: str = "") -> str:
    """The MLflow parent run's description: the primary family first (when the suite has one), then the
    exploratory headline deltas, then the suite's `suite.description` (the run page may fold a long
    description, so what answers the suite's question comes first)."""
    parts = []
    if primary is not None:  # a synthetic suite's smoke-test line leads, as it leads the exploratory headline
        parts += [n for n in (smoke_note(dataset), primary_headline(primary)) if n]
        parts.append("Exploratory (every other comparison; Holm within each model × slice × metric):")
    parts.append(headline_deltas(rows, variants, confidence, dataset=dataset))
    if description.strip():
        parts.append(description.strip())
    return "\n\n".join(parts)


