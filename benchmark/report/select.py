"""`qarm-bench select`: choose a sweep's value on validation rows, then report its test figures once.

A sweep (suite.sweep_key / sweep_values, e.g. ablation-levels over quantize.levels) runs one folder per value.
For each value this reads results.json only and takes, for one variant of one model, the mean over its cells
(replicates, and split seeds as units when there are several) of the validation metric at the cell's
best epoch (CellRecord.val_best, the figure early stopping chose the epoch on). The value with the highest mean
is the best (lower is better for logloss; ties: the first in sweep order). Only then are the chosen value's test
figures read: the variant's test AUC against `--baseline` (default id_only) on every slice, as the paired
delta over seeds with its t interval (benchmark.report.stats.paired_delta). Other values' test figures are not
printed.

`--slice all` (the default) decides on every validation row; `--slice cold` on the validation rows of items
without a train row, which exist only when the sweep's config draws them (data.split.val_cold_item_frac: a
second cold draw whose rows go to validation only, the test cold draw unchanged): a choice for cold items
made on cold items, without reading the test cold slice.

`--incumbent VALUE` (the value in use, e.g. the default): the best value replaces it only when it beats it on
validation, its paired difference over the units (same cells, same seeds) having a 95% t interval above zero
(below, for logloss); otherwise the incumbent stays, and the report says by how much the best led. Without it
the best value is chosen whatever its margin.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.core.configlib import to_plain
from benchmark.core.errors import QarmBenchError
from benchmark.report.stats import Unit, paired_delta, unit_values
from benchmark.report.write import load_manifest, sweep_position

LOWER_IS_BETTER = {"logloss"}


@dataclass(frozen=True)
class SweepValue:
    """One sweep value: its label, per cell the validation metric, and their mean over analysis units."""

    label: str
    folder: str
    val: dict[str, float]  # "split/seed" -> value
    mean_val: float


@dataclass(frozen=True)
class SliceTest:
    """The chosen value's test figures on one slice: the variant's mean, and the paired delta vs the baseline."""

    slice: str
    mean: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None
    n: int


@dataclass(frozen=True)
class SweepSelection:
    """What was chosen on validation and its test figures (read once)."""

    sweep_key: str
    model: str
    variant: str
    baseline: str
    metric: str
    values: tuple[SweepValue, ...]
    chosen: int
    test: tuple[SliceTest, ...]
    slice: str = "all"
    best: int = 0  # the value with the best validation mean
    incumbent: int | None = None  # the value in use (--incumbent), kept unless the best beats it
    margin: tuple[float | None, float | None, float | None, float | None] | None = None  # best - incumbent:
    # (delta, p, ci_low, ci_high) on validation, paired over units; None without an incumbent or when best is it


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _cells(res: Any, model: str, variant: str) -> list[Any]:
    return [c for c in res.cells if c.model == model and c.variant == variant]


def _val_metric(folder: Path, c: Any, model: str, variant: str, metric: str, slice_name: str) -> float:
    """A cell's validation `metric` at its best epoch on `slice_name` ("all": val_best; else val_slices)."""
    if slice_name == "all":
        got = c.val_best
    elif slice_name not in c.val_slices:
        raise QarmBenchError(f"{folder}: cell {model}/{variant} seed {c.seed} has no validation {slice_name!r} slice "
                             f"(validation holds no cold item unless the sweep's config draws some: set "
                             f"data.split.val_cold_item_frac > 0, e.g. 0.1, and rerun the sweep)")
    else:
        got = c.val_slices[slice_name]
    v = got.get(metric)
    if v is None:
        raise QarmBenchError(f"{folder}: cell {model}/{variant} seed {c.seed} has no validation {metric!r} on slice "
                             f"{slice_name!r} (it has {sorted(got)})")
    return float(v)


def _find_value(values: list[SweepValue], incumbent: str) -> int:
    for i, v in enumerate(values):
        if v.label == incumbent or v.label.rsplit("=", 1)[-1] == incumbent:
            return i
    raise QarmBenchError(f"select --incumbent {incumbent!r}: not a value of this sweep (its values: "
                         f"{', '.join(v.label for v in values)})")


def select_sweep(folders: list[Path], model: str, variant: str, metric: str = "auc",
                 baseline: str = "id_only", slice_name: str = "all",
                 incumbent: str | None = None) -> SweepSelection:
    """Choose among a sweep's value folders on validation `metric` of `slice_name`, keeping `incumbent` unless
    the best value beats it (module doc)."""
    if len(folders) < 2:
        raise QarmBenchError(f"select: expected a sweep (two or more value folders), got {len(folders)} run(s)")
    runs = [load_manifest(f) for f in folders]
    keys = {r.config.get("suite", {}).get("sweep_key", "") for r in runs}
    ranked = sorted(range(len(runs)), key=lambda i: (sweep_position(runs[i]), i))  # the sweep's own order
    folders, runs = [folders[i] for i in ranked], [runs[i] for i in ranked]
    values, per_unit = [], []  # per_unit[i]: value i's {Unit: validation figure}, for the paired margin
    for folder, res in zip(folders, runs):
        cells = _cells(res, model, variant)
        if not cells:
            raise QarmBenchError(f"{folder}: no {model}/{variant} cells (the suite runs models {list(res.models)}, "
                                 f"variants {list(res.variants)})")
        val: dict[Unit, float] = {(int(c.split_seed), int(c.seed)): _val_metric(folder, c, model, variant, metric,
                                                                                 slice_name) for c in cells}
        units = unit_values(val)
        per_unit.append(val)
        values.append(SweepValue(res.label or str(folder), str(folder), {f"{s}/{r}": v for (s, r), v in val.items()},
                                 float(units.values.mean()) if units.n else math.nan))
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    best = max(range(len(values)), key=lambda i: (sign * values[i].mean_val if math.isfinite(values[i].mean_val)
                                                  else -math.inf, -i))
    chosen, kept, margin = best, None, None
    if incumbent is not None:
        kept = _find_value(values, incumbent)
        if kept != best:
            d, p, lo, hi = paired_delta(per_unit[best], per_unit[kept])
            margin = (_num(d), _num(p), _num(lo), _num(hi))
            beaten = math.isfinite(lo) and (lo > 0 if sign > 0 else hi < 0)
            chosen = best if beaten else kept
    res = runs[chosen]
    test = []
    mine = _cells(res, model, variant)
    base = _cells(res, model, baseline)
    for test_slice in sorted({s for c in mine for s in c.test}, key=lambda s: (s != "all", s != "cold", s)):
        a = {(int(c.split_seed), int(c.seed)): float(c.test[test_slice].get("auc") or math.nan) for c in mine
             if test_slice in c.test}
        b = {(int(c.split_seed), int(c.seed)): float(c.test[test_slice].get("auc") or math.nan) for c in base
             if test_slice in c.test}
        u = unit_values(a)
        delta, p, lo, hi = paired_delta(a, b) if b else (math.nan,) * 4
        test.append(SliceTest(test_slice, _num(float(u.values.mean())) if u.n else None, _num(delta), _num(lo),
                              _num(hi), _num(p), u.n))
    return SweepSelection(next(iter(keys)) if len(keys) == 1 else "", model, variant, baseline, metric,
                          tuple(values), chosen, tuple(test), slice_name, best, kept, margin)


def render_selection(sel: SweepSelection) -> str:
    """Markdown: the validation table with the choice, then the chosen value's test figures."""
    better = "lower" if sel.metric in LOWER_IS_BETTER else "higher"
    where = ("every validation row (validation holds no cold item unless data.split.val_cold_item_frac draws "
             "some, so this is mostly warm rows)" if sel.slice == "all" else
             f"the validation rows of the {sel.slice!r} slice (items without a train row: the "
             "data.split.val_cold_item_frac draw)")
    lines = [f"# {sel.sweep_key or 'sweep'} chosen on validation: {sel.model} {sel.variant}, slice {sel.slice}", "",
             f"Validation {sel.metric} at each cell's best epoch on {where}, mean over seeds ({better} is better). "
             "Test figures are read once, for the chosen value only.", "",
             f"| {sel.sweep_key or 'value'} | validation {sel.metric} | per seed | |", "|---|---|---|---|"]
    for i, v in enumerate(sel.values):
        per = ", ".join(f"{x:.4f}" for x in v.val.values())
        mark = ["**chosen**"] if i == sel.chosen else []
        mark += ["best"] if i == sel.best and i != sel.chosen else []
        mark += ["in use"] if i == sel.incumbent else []
        lines.append(f"| {v.label} | {v.mean_val:.4f} | {per} | {', '.join(mark)} |")
    if sel.incumbent is not None:
        rule = (f"Rule: the value in use ({sel.values[sel.incumbent].label}) is kept unless the best beats it on "
                "validation with a paired 95% t interval clear of zero.")
        if sel.margin is None:
            lines += ["", rule + " The value in use is the best."]
        else:
            d, p, lo, hi = sel.margin
            fig = ("n/a" if d is None else f"{d:+.4f}" + ("" if lo is None else f" [{lo:+.4f}, {hi:+.4f}]")
                   + ("" if p is None else f", p {p:.3g}"))
            lines += ["", rule + f" Best minus in use: {fig}: "
                      + ("beaten, the best is chosen." if sel.chosen == sel.best else "not beaten, it stays.")]
    lines += ["", f"Test AUC of the chosen value ({sel.values[sel.chosen].label}), {sel.variant} against "
              f"{sel.baseline}, paired over seeds (95% t interval):", "",
              "| slice | AUC | Δ vs baseline [95% CI] | p | n |", "|---|---|---|---|---|"]
    for t in sel.test:
        ci = "" if t.ci_low is None else f" [{t.ci_low:+.4f}, {t.ci_high:+.4f}]"
        lines.append(f"| {t.slice} | {'–' if t.mean is None else f'{t.mean:.4f}'} | "
                     f"{'–' if t.delta is None else f'{t.delta:+.4f}'}{ci} | {'–' if t.p is None else f'{t.p:.3g}'} | "
                     f"{t.n} |")
    return "\n".join(lines) + "\n"


def add_arguments(p: Any) -> None:
    p.add_argument("sweep", metavar="SWEEP", help="a sweep suite's name or folder (its latest run: every value)")
    p.add_argument("--model", default="dlrm", help="the model whose cells decide (default: dlrm)")
    p.add_argument("--variant", default="aligned_codes", help="the variant whose cells decide (default: aligned_codes)")
    p.add_argument("--baseline", default="id_only", help="the test delta's baseline (default: id_only)")
    p.add_argument("--metric", default="auc", help="the validation metric (default: auc; logloss: lower is better)")
    p.add_argument("--slice", default="all", choices=["all", "cold"],
                   help="the validation rows that decide: all (default) or cold (items without a train row; the "
                        "sweep must draw them: data.split.val_cold_item_frac > 0)")
    p.add_argument("--incumbent", default=None, metavar="VALUE",
                   help="the value in use: kept unless the best beats it on validation (paired 95%% t interval "
                        "clear of zero)")
    p.add_argument("--runs-dir", default="runs", help="where suites live (default: runs)")
    p.add_argument("--json", action="store_true", help="print the selection as JSON instead of markdown")


def main_select(args: Any) -> int:
    from benchmark.report.compare import compare_targets

    folders = compare_targets(args.sweep, Path(args.runs_dir))
    sel = select_sweep(folders, args.model, args.variant, args.metric, args.baseline, args.slice, args.incumbent)
    print(json.dumps(to_plain(sel), indent=1) if args.json else render_selection(sel))
    return 0
