"""The primary hypothesis of a suite (issue 20): one declared family of contrasts, tested once, with verdicts.

QARM's claim, as tests: aligned_codes against id_only, frozen_codes, random_codes and shuffled_codes, on the
test AUC, on all rows and on the cold items, for every model of the suite. Every (model, slice, contrast) is one
test of ONE Holm family (Holm 1979), so m is fixed by the declaration, not by the data: a test whose paired t
cannot be computed keeps a p (the bootstrap's, when given) or counts as p = 1.

    PrimaryHypothesis   the declaration (frozen, typed; loadable from TOML/JSON with configlib.from_mapping)
    family_tests        the declared tests, in order: model x slice x contrast
    primary_bootstrap   the hierarchical bootstrap of every declared test from the per-seed test rows
    primary_family      per-seed AUCs (+ bootstrap) -> PrimaryFamily: one PrimaryRecord per test
    render_primary      the markdown table, the family and its size first
    hypothesis_of       a suite's [report] config and its resolved contrasts -> PrimaryHypothesis (or None)
    seed_values         the cells' per-seed test metric per (model, variant, slice)
    results_family      the family of a results.json: the engine's (with the bootstrap), else recomputed
    power_statement     the headline's line when the suite cannot detect its target effect

Per test (benchmark.report.stats): the paired t over seeds (delta, its 1 - alpha interval, raw p), Holm's p over the
whole family, TOST within +-equivalence_margin (Schuirmann 1987; Lakens 2017), the verdict (gain / loss /
equivalent / inconclusive; never "no difference"), the MDE at `power` with alpha / m (Holm's first step, the
level the smallest p must reach) from the per-seed sd of the delta, with the range that sd's chi-square interval
gives (with 3 seeds the sd itself is uncertain by ~0.5x to 6x), and the replicates needed for target_effect.

JSON form: configlib.to_plain(family) gives dicts / lists / numbers / strings / null (undefined numbers are null,
never NaN); configlib.from_mapping(PrimaryFamily, data) reads it back strictly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from benchmark.config.suite import DEFAULT_PRIMARY_CONTRASTS, ReportConfig, parse_contrast
from benchmark.core.configlib import from_mapping
from benchmark.core.errors import require
from benchmark.core.records import CellRecord, SuiteResults
from benchmark.core.registry import VARIANTS
from benchmark.report.stats import (
    BootstrapDelta,
    ScoredRows,
    Unit,
    Units,
    Verdict,
    fmt_p,
    hierarchical_bootstrap,
    holm,
    mde,
    paired_t,
    paired_units,
    replicates_needed,
    sd_interval,
    tost,
    verdict,
)

# (model, variant, slice) -> cell -> AUC; a cell is its replicate seed or (split seed, replicate seed)
SeedValues = Mapping[tuple[str, str, str], Mapping[Unit, float]]


@dataclass(frozen=True)
class Contrast:
    """variant against baseline: delta = variant - baseline, paired on the seed."""

    variant: str
    baseline: str

    @property
    def label(self) -> str:
        return f"{self.variant} vs {self.baseline}"


DEFAULT_CONTRASTS: tuple[Contrast, ...] = tuple(
    Contrast(*pair) for pair in map(parse_contrast, DEFAULT_PRIMARY_CONTRASTS) if pair is not None)


def _default_targets() -> dict[str, float]:
    return {"all": 0.005, "cold": 0.01}


@dataclass(frozen=True)
class PrimaryHypothesis:
    """The declared primary family. contrasts x slices x models are its tests; models () = every model of the
    suite. alpha: the family-wise level (Holm) and the TOST level; power: for the MDE; equivalence_margin: the
    TOST margin on delta AUC; target_effect: per slice, the delta the replicates-needed column is sized for;
    replicates_cap: replicates_needed gives up above it; two_way_slices: the slices the bootstrap resamples
    users AND items on (a cold slice has few items, whose sampling is a large part of its uncertainty)."""

    contrasts: tuple[Contrast, ...] = DEFAULT_CONTRASTS
    metric: Literal["auc"] = "auc"
    slices: tuple[str, ...] = ("all", "cold")
    models: tuple[str, ...] = ()
    alpha: float = 0.05
    power: float = 0.8
    equivalence_margin: float = 0.002
    target_effect: dict[str, float] = field(default_factory=_default_targets)
    replicates_cap: int = 1000
    two_way_slices: tuple[str, ...] = ("cold",)

    def __post_init__(self) -> None:
        require(self, "contrasts", bool(self.contrasts) and len(set(self.contrasts)) == len(self.contrasts),
                "a non-empty list of distinct contrasts")
        for c in self.contrasts:
            require(self, "contrasts", c.variant != c.baseline and c.variant in VARIANTS and c.baseline in VARIANTS,
                    "contrasts of two different known variants")
        require(self, "slices", bool(self.slices) and len(set(self.slices)) == len(self.slices),
                "a non-empty list of distinct slices")
        require(self, "models", len(set(self.models)) == len(self.models), "distinct models")
        require(self, "alpha", 0 < self.alpha < 0.5, "a level in (0, 0.5)")
        require(self, "power", 0 < self.power < 1, "a power in (0, 1)")
        require(self, "equivalence_margin", self.equivalence_margin > 0, "a margin > 0")
        require(self, "target_effect", all(s in self.target_effect and self.target_effect[s] > 0
                                           for s in self.slices), f"an effect > 0 for every slice {self.slices}")
        require(self, "replicates_cap", self.replicates_cap >= 2, "a cap >= 2")


@dataclass(frozen=True)
class PrimaryTest:
    """One declared test of the family: a contrast on one model and slice."""

    model: str
    slice: str
    contrast: Contrast


def family_models(hypothesis: PrimaryHypothesis, suite_models: Sequence[str]) -> tuple[str, ...]:
    """The models of the family: the declaration's when it names some, else every model of the suite."""
    return tuple(hypothesis.models) or tuple(suite_models)


def family_tests(hypothesis: PrimaryHypothesis, suite_models: Sequence[str]) -> tuple[PrimaryTest, ...]:
    """The declared tests, model x slice x contrast in declaration order; their number is the family size m."""
    return tuple(PrimaryTest(m, s, c) for m in family_models(hypothesis, suite_models)
                 for s in hypothesis.slices for c in hypothesis.contrasts)


@dataclass(frozen=True)
class PrimaryRecord:
    """The result of one test of the primary family (None: undefined, e.g. under 2 seeds).

    seeds: the seeds both variants have; delta, sd: mean and sample sd of the per-seed differences; ci_low,
    ci_high: the (1 - alpha) t interval; p: the raw p and p_source where it came from ("t", "constant": a
    constant difference, p 0 or 1, "bootstrap": no t test, the bootstrap's p, "untestable": counted as p = 1);
    p_holm over the family of family_size tests; tost_p, tost_ci_low/high: TOST and its (1 - 2 alpha) interval,
    within_margin when TOST declares equivalence; verdict; mde at mde_alpha and the hypothesis' power, mde_low
    and mde_high from the sd's 95% chi-square interval; replicates_needed for target_effect (None: no sd, or
    more than the cap); bootstrap_*: the hierarchical bootstrap of the delta, when one was given.

    unit: what the t test, the MDE and replicates_needed count (benchmark.report.stats, "Units of analysis"):
    "seed" (the replicate seeds) or "split seed" (several split seeds: each one's replicates averaged);
    n_units: how many (0 in a record written before it existed: len(seeds)); split_seeds: the split seeds
    behind the cells (empty when the run drew one split)."""

    model: str
    slice: str
    variant: str
    baseline: str
    metric: str
    seeds: tuple[int, ...]
    delta: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None
    p_source: Literal["t", "constant", "bootstrap", "untestable"]
    p_holm: float | None
    family_size: int
    tost_p: float | None
    tost_ci_low: float | None
    tost_ci_high: float | None
    equivalence_margin: float
    within_margin: bool
    verdict: Verdict
    mde: float | None
    mde_low: float | None
    mde_high: float | None
    mde_alpha: float
    target_effect: float
    replicates_needed: int | None
    bootstrap_delta: float | None = None
    bootstrap_ci_low: float | None = None
    bootstrap_ci_high: float | None = None
    bootstrap_p: float | None = None
    bootstrap_sd: float | None = None
    bootstrap_two_way: bool | None = None
    unit: Literal["seed", "split seed"] = "seed"
    n_units: int = 0
    split_seeds: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        """The number of analysis units behind the t test (n_units; len(seeds) for an older record)."""
        return self.n_units or len(self.seeds)


@dataclass(frozen=True)
class PrimaryFamily:
    """The primary family's results: the declaration, its models, size m, and one record per declared test."""

    hypothesis: PrimaryHypothesis
    models: tuple[str, ...]
    size: int
    mde_alpha: float
    records: tuple[PrimaryRecord, ...]


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _diffs(per_seed: SeedValues, model: str, slice_name: str, c: Contrast) -> Units:
    return paired_units(per_seed.get((model, c.variant, slice_name), {}),
                        per_seed.get((model, c.baseline, slice_name), {}))


def _split(unit: Unit) -> int:
    return unit[0] if isinstance(unit, tuple) else 0


def primary_bootstrap(hypothesis: PrimaryHypothesis, rows: Mapping[tuple[str, str, str, int], ScoredRows],
                      suite_models: Sequence[str], *, n_boot: int = 2000, seed: int = 0,
                      jobs: int = 1) -> dict[PrimaryTest, BootstrapDelta]:
    """The hierarchical bootstrap (benchmark.report.stats.hierarchical_bootstrap) of every declared test whose two
    variants have test rows on common cells. rows: (model, variant, slice, cell) -> that cell's test rows of
    the slice, a cell its replicate seed or (split seed, replicate seed); several split seeds make the split
    seed the bootstrap's top stage (groups); two-way (users x items) on hypothesis.two_way_slices. jobs: tests
    bootstrapped at once, in threads (numpy's array work runs outside the GIL); every test draws from its own
    generator seeded by `seed`, so the figures do not depend on jobs."""
    args = {}
    for t in family_tests(hypothesis, suite_models):
        seeds = sorted((s for (m, v, sl, s) in rows if (m, v, sl) == (t.model, t.contrast.variant, t.slice)
                        and (t.model, t.contrast.baseline, t.slice, s) in rows),
                       key=lambda u: u if isinstance(u, tuple) else (0, u))
        if seeds:
            groups = [_split(s) for s in seeds]
            args[t] = ([rows[(t.model, t.contrast.variant, t.slice, s)] for s in seeds],
                       [rows[(t.model, t.contrast.baseline, t.slice, s)] for s in seeds],
                       t.slice in hypothesis.two_way_slices, groups if len(set(groups)) > 1 else None)

    def one(t: PrimaryTest) -> BootstrapDelta:
        variant, baseline, two_way, groups = args[t]
        return hierarchical_bootstrap(variant, baseline, two_way=two_way, n_boot=n_boot, seed=seed, groups=groups)

    if jobs <= 1 or len(args) <= 1:
        return {t: one(t) for t in args}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(jobs, len(args)), thread_name_prefix="qarm-bootstrap") as ex:
        return dict(zip(args, ex.map(one, args)))


def primary_family(hypothesis: PrimaryHypothesis, per_seed: SeedValues, suite_models: Sequence[str] = (), *,
                   bootstrap: Mapping[PrimaryTest, BootstrapDelta] | None = None) -> PrimaryFamily:
    """Test every declared contrast. per_seed: (model, variant, slice) -> {cell: AUC}, a cell its replicate
    seed or (split seed, replicate seed) (NaN / missing cells are skipped; several split seeds make the split
    seed the unit, benchmark.report.stats.paired_units); suite_models: the suite's models, used when the declaration names none (if both are empty, the
    models present in per_seed). Tests whose cells are missing stay in the family (p = 1, inconclusive)."""
    models = family_models(hypothesis, suite_models) or tuple(dict.fromkeys(m for m, _, _ in per_seed))
    tests = family_tests(hypothesis, models)
    m = len(tests)
    alpha, mde_alpha = hypothesis.alpha, hypothesis.alpha / m
    boot = bootstrap or {}
    partial = []
    for t in tests:
        units = _diffs(per_seed, t.model, t.slice, t.contrast)
        d = units.values
        pt = paired_t(d, 1 - alpha)
        b = boot.get(t)
        source = pt.p_source
        p = pt.p
        if source == "untestable" and b is not None and math.isfinite(b.p):
            source, p = "bootstrap", b.p
        partial.append((t, units, d, pt, p, source, b))
    adjusted = holm([x[4] for x in partial], count_untestable=True)
    records = []
    for (t, units, d, pt, p, source, b), p_holm in zip(partial, adjusted):
        eq = tost(d, hypothesis.equivalence_margin, alpha)
        target = hypothesis.target_effect[t.slice]
        lo_sd, hi_sd = sd_interval(pt.sd, pt.n)
        ok = pt.n >= 2
        records.append(PrimaryRecord(
            model=t.model, slice=t.slice, variant=t.contrast.variant, baseline=t.contrast.baseline,
            metric=hypothesis.metric, seeds=units.seeds, delta=_num(pt.delta), sd=_num(pt.sd), ci_low=_num(pt.ci_low),
            ci_high=_num(pt.ci_high), p=_num(p), p_source=source, p_holm=_num(p_holm), family_size=m,
            tost_p=_num(eq.p), tost_ci_low=_num(eq.ci_low), tost_ci_high=_num(eq.ci_high),
            equivalence_margin=hypothesis.equivalence_margin, within_margin=eq.equivalent,
            verdict=verdict(pt.ci_low, pt.ci_high, p_holm, eq.equivalent, alpha),
            mde=_num(mde(pt.sd, pt.n, mde_alpha, hypothesis.power)) if ok else None,
            mde_low=_num(mde(lo_sd, pt.n, mde_alpha, hypothesis.power)) if ok else None,
            mde_high=_num(mde(hi_sd, pt.n, mde_alpha, hypothesis.power)) if ok else None,
            mde_alpha=mde_alpha, target_effect=target,
            replicates_needed=replicates_needed(pt.sd, target, mde_alpha, hypothesis.power,
                                                hypothesis.replicates_cap) if ok else None,
            bootstrap_delta=None if b is None else _num(b.delta),
            bootstrap_ci_low=None if b is None else _num(b.ci_low),
            bootstrap_ci_high=None if b is None else _num(b.ci_high),
            bootstrap_p=None if b is None else _num(b.p), bootstrap_sd=None if b is None else _num(b.sd),
            bootstrap_two_way=None if b is None else b.two_way, unit=units.kind, n_units=units.n,
            split_seeds=units.ids if units.kind == "split seed" else ()))
    return PrimaryFamily(hypothesis=hypothesis, models=models, size=m, mde_alpha=mde_alpha, records=tuple(records))


def _f(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def family_statement(family: PrimaryFamily) -> str:
    """One paragraph: what the family is, its size, the level, the margin and how the MDE is computed."""
    h = family.hypothesis
    contrasts = ", ".join(c.label for c in h.contrasts)
    return (f"Primary family ({h.metric.upper()}): {contrasts}; slices {', '.join(h.slices)}; models "
            f"{', '.join(family.models) or '–'}: **m = {family.size} tests**, Holm (1979) over the whole family at "
            f"α = {h.alpha}. Verdicts: gain / loss = the {1 - h.alpha:.0%} t interval of Δ above / below 0 and "
            f"Holm p < {h.alpha}; equivalent = the {1 - 2 * h.alpha:.0%} interval inside ±{h.equivalence_margin} "
            "(TOST; Schuirmann 1987, Lakens 2017); inconclusive otherwise, which is not \"no difference\". "
            f"MDE: the Δ detectable at {h.power:.0%} power at α/m = {family.mde_alpha:.4g} (Holm's first step) "
            f"with this many {_unit(family)}s, from the per-{_unit(family)} sd of Δ; in brackets, the MDE over the "
            f"sd's 95% chi-square interval (an sd from a few {_unit(family)}s is itself an estimate). Replicates: "
            f"the {_unit(family)}s needed for the target Δ "
            f"({', '.join(f'{s} {e:+g}' for s, e in h.target_effect.items() if s in h.slices)})."
            + ("" if _unit(family) == "seed" else " Several split seeds: the unit of the t test, the MDE and the "
               "replicates is the split seed, its replicates averaged (replicates are nested in their split); "
               "the bootstrap resamples split seeds, then replicates, then users."))


def _unit(family: PrimaryFamily) -> str:
    """"split seed" when any test's unit is the split seed, else "seed"."""
    return "split seed" if any(r.unit == "split seed" for r in family.records) else "seed"


def render_primary(family: PrimaryFamily) -> str:
    """Markdown: the family statement, then one line per test (model, slice, contrast)."""
    cap, alpha = family.hypothesis.replicates_cap, family.hypothesis.alpha
    lines = [family_statement(family), "",
             f"| model | slice | contrast | {_unit(family)}s | Δ AUC [{1 - family.hypothesis.alpha:.0%} CI] | p | Holm p | "
             f"TOST p (±{family.hypothesis.equivalence_margin}) | verdict | MDE [range] | replicates for target | "
             "bootstrap Δ [CI] p |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in family.records:
        ci = "" if r.ci_low is None else f" [{r.ci_low:+.4f}, {r.ci_high:+.4f}]"
        p = fmt_p(r.p, alpha) + ("" if r.p_source == "t" else f" ({r.p_source})")
        mde_s = "–" if r.mde is None else f"{r.mde:.4f} [{_f(r.mde_low, '.4f')}, {_f(r.mde_high, '.4f')}]"
        need = "–" if r.sd is None else (f"> {cap}" if r.replicates_needed is None else str(r.replicates_needed))
        boot = "–" if r.bootstrap_ci_low is None else (
            f"{_f(r.bootstrap_delta, '+.4f')} [{r.bootstrap_ci_low:+.4f}, {_f(r.bootstrap_ci_high, '+.4f')}] "
            f"p {fmt_p(r.bootstrap_p, alpha)}{' (users x items)' if r.bootstrap_two_way else ''}")
        verdict_s = f"**{r.verdict}**" + (" (within margin)" if r.within_margin and r.verdict != "equivalent" else "")
        lines.append(f"| {r.model} | {r.slice} | {r.variant} vs {r.baseline} | {r.n} | "
                     f"{_f(r.delta, '+.4f')}{ci} | {p} | {fmt_p(r.p_holm, alpha)} | {fmt_p(r.tost_p, alpha)} | "
                     f"{verdict_s} | {mde_s} | {need} (for {r.target_effect:+g}) | {boot} |")
    return "\n".join(lines)


def hypothesis_of(report: ReportConfig, contrasts: Sequence[tuple[str, str]]) -> PrimaryHypothesis | None:
    """The primary hypothesis a suite declared: [report.primary] with the contrasts resolved against the suite
    (benchmark.config.suite.primary_contrasts), report.equivalence_margin and report.target_effect. None when no
    contrast is left (the suite runs none of the default contrasts' variants)."""
    if not contrasts:
        return None
    p = report.primary
    return PrimaryHypothesis(contrasts=tuple(Contrast(a, b) for a, b in contrasts), metric=p.metric,
                             slices=tuple(p.slices), models=tuple(p.models),
                             equivalence_margin=report.equivalence_margin,
                             target_effect={s: float(report.target_effect[s]) for s in p.slices})


def seed_values(cells: Sequence[CellRecord], metric: str = "auc") -> dict[tuple[str, str, str], dict[Unit, float]]:
    """(model, variant, slice) -> {(split seed, replicate seed): the cell's test `metric`} (NaN when
    undefined)."""
    out: dict[tuple[str, str, str], dict[Unit, float]] = {}
    for c in cells:
        for slice_name, metrics in c.test.items():
            v = metrics.get(metric)
            out.setdefault((c.model, c.variant, slice_name), {})[(int(c.split_seed), int(c.seed))] = (
                math.nan if v is None else float(v))
    return out


def results_family(results: SuiteResults) -> PrimaryFamily | None:
    """The primary family of a run: the one the engine stored in results.json (`primary`, with the hierarchical
    bootstrap of every test), else (a manifest written before it existed) the family recomputed from the cells'
    per-seed AUCs and the run's [report] config, without the bootstrap. None: the suite has no primary family."""
    if results.primary:
        return from_mapping(PrimaryFamily, results.primary)
    report = from_mapping(ReportConfig, results.config.get("report") or {})
    pairs = report.primary.pairs
    if report.primary.contrasts == DEFAULT_PRIMARY_CONTRASTS:
        pairs = tuple(p for p in pairs if all(v in results.variants for v in p))
    h = hypothesis_of(report, pairs)
    if h is None:
        return None
    return primary_family(h, seed_values(results.cells, h.metric), results.models)


def undetectable(family: PrimaryFamily) -> list[PrimaryRecord]:
    """The tests whose MDE (at 80% power and alpha / m) exceeds their target effect, or that have none."""
    return [r for r in family.records if r.mde is None or r.mde > r.target_effect]


def power_statement(family: PrimaryFamily) -> str:
    """One sentence for the headline: whether the suite can detect its target effects, and if not, how far."""
    bad = undetectable(family)
    n = max((r.n for r in family.records), default=0)
    unit = _unit(family)
    if not bad:
        return (f"With {n} {unit}s every primary test can detect its target effect (MDE at "
                f"{family.hypothesis.power:.0%} power <= target).")
    worst = [r for r in bad if r.mde is not None]
    detail = "; ".join(
        f"{r.model} {r.slice} {r.variant} vs {r.baseline}: MDE {r.mde:.4f} > target {r.target_effect:g}"
        f" (needs {'> ' + str(family.hypothesis.replicates_cap) if r.replicates_needed is None else r.replicates_needed}"
        f" {unit}s)" for r in worst[:4])
    more = f"; {len(worst) - 4} more" if len(worst) > 4 else ""
    untestable = len(bad) - len(worst)
    return (f"**This suite cannot detect its target effect** on {len(bad)} of {family.size} primary tests with "
            f"{n} {unit}s" + (f" ({untestable} without an MDE: fewer than 2 {unit}s)" if untestable else "")
            + (f": {detail}{more}." if detail else "."))
