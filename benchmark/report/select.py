"""`qarm-bench select`: choose a sweep's value on validation rows, then report its test figures once.

A sweep (suite.sweep_key / sweep_values, e.g. ablation-levels over quantize.levels) runs one folder per value.
For each value this reads results.json only and takes, for one variant of one model, the mean over its cells
(replicates, and split seeds as units when there are several) of the validation metric at the cell's
best epoch (CellRecord.val_best, the figure early stopping chose the epoch on). The value with the highest mean
is chosen (lower is better for logloss; ties: the first in sweep order). Only then are the chosen value's test
figures read: the variant's test AUC against `--baseline` (default id_only) on every slice, as the paired
delta over seeds with its t interval (benchmark.report.stats.paired_delta). Other values' test figures are not
printed.

Validation rows hold no cold items (cold items are kept out of train and validation by construction), so a
choice made here is made on the warm validation rows even when the question is about cold items; the report
says so.
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
from benchmark.report.write import load_manifest

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


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _cells(res: Any, model: str, variant: str) -> list[Any]:
    return [c for c in res.cells if c.model == model and c.variant == variant]


def select_sweep(folders: list[Path], model: str, variant: str, metric: str = "auc",
                 baseline: str = "id_only") -> SweepSelection:
    """Choose among a sweep's value folders on validation `metric` (module doc)."""
    if len(folders) < 2:
        raise QarmBenchError(f"select: expected a sweep (two or more value folders), got {len(folders)} run(s)")
    runs = [load_manifest(f) for f in folders]
    keys = {r.config.get("suite", {}).get("sweep_key", "") for r in runs}
    values = []
    for folder, res in zip(folders, runs):
        cells = _cells(res, model, variant)
        if not cells:
            raise QarmBenchError(f"{folder}: no {model}/{variant} cells (the suite runs models {list(res.models)}, "
                                 f"variants {list(res.variants)})")
        val: dict[Unit, float] = {}
        for c in cells:
            v = c.val_best.get(metric)
            if v is None:
                raise QarmBenchError(f"{folder}: cell {model}/{variant} seed {c.seed} has no validation {metric!r} "
                                     f"(it has {sorted(c.val_best)})")
            val[(int(c.split_seed), int(c.seed))] = float(v)
        units = unit_values(val)
        values.append(SweepValue(res.label or str(folder), str(folder), {f"{s}/{r}": v for (s, r), v in val.items()},
                                 float(units.values.mean()) if units.n else math.nan))
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    chosen = max(range(len(values)), key=lambda i: (sign * values[i].mean_val if math.isfinite(values[i].mean_val)
                                                    else -math.inf, -i))
    res = runs[chosen]
    test = []
    mine = _cells(res, model, variant)
    base = _cells(res, model, baseline)
    for slice_name in sorted({s for c in mine for s in c.test}, key=lambda s: (s != "all", s != "cold", s)):
        a = {(int(c.split_seed), int(c.seed)): float(c.test[slice_name].get("auc") or math.nan) for c in mine
             if slice_name in c.test}
        b = {(int(c.split_seed), int(c.seed)): float(c.test[slice_name].get("auc") or math.nan) for c in base
             if slice_name in c.test}
        u = unit_values(a)
        delta, p, lo, hi = paired_delta(a, b) if b else (math.nan,) * 4
        test.append(SliceTest(slice_name, _num(float(u.values.mean())) if u.n else None, _num(delta), _num(lo),
                              _num(hi), _num(p), u.n))
    return SweepSelection(next(iter(keys)) if len(keys) == 1 else "", model, variant, baseline, metric,
                          tuple(values), chosen, tuple(test))


def render_selection(sel: SweepSelection) -> str:
    """Markdown: the validation table with the choice, then the chosen value's test figures."""
    better = "lower" if sel.metric in LOWER_IS_BETTER else "higher"
    lines = [f"# {sel.sweep_key or 'sweep'} chosen on validation: {sel.model} {sel.variant}", "",
             f"Validation {sel.metric} at each cell's best epoch, mean over seeds ({better} is better). Validation "
             "rows hold no cold items, so the choice is made on warm rows. Test figures are read once, for the "
             "chosen value only.", "",
             f"| {sel.sweep_key or 'value'} | validation {sel.metric} | per seed | |", "|---|---|---|---|"]
    for i, v in enumerate(sel.values):
        per = ", ".join(f"{x:.4f}" for x in v.val.values())
        lines.append(f"| {v.label} | {v.mean_val:.4f} | {per} | {'**chosen**' if i == sel.chosen else ''} |")
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
    p.add_argument("--runs-dir", default="runs", help="where suites live (default: runs)")
    p.add_argument("--json", action="store_true", help="print the selection as JSON instead of markdown")


def main_select(args: Any) -> int:
    from benchmark.report.compare import compare_targets

    folders = compare_targets(args.sweep, Path(args.runs_dir))
    sel = select_sweep(folders, args.model, args.variant, args.metric, args.baseline)
    print(json.dumps(to_plain(sel), indent=1) if args.json else render_selection(sel))
    return 0
