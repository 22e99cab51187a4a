"""`qarm-bench compare A B ...`: QARM's primary contrasts across several runs, side by side, from results.json only.

    compare_targets(arg, runs_dir) -> [folder]       a run folder, a suite (its latest run) or a sweep (each value)
    compare_runs(folders) -> [ComparedRun]            per run: the primary family (benchmark.report.primary)
    render_compare / compare_json / compare_html      one table; JSON; one page with the forest plot embedded

Per run, the per-seed test AUCs of its cells go through benchmark.report.primary.primary_family with the default
declaration: aligned_codes vs id_only, frozen_codes, random_codes and shuffled_codes, on the slices `all` and
`cold`, for every model of the run; delta = mean over seeds of the paired difference, its (1 - alpha) t interval,
and Holm's p over the whole family of that run (m = models x slices x contrasts; a contrast whose cells are
missing stays in the family as p = 1, shown as –). The hierarchical bootstrap is not recomputed: it needs each
cell's test rows, which results.json does not hold. Nothing here imports torch.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.core.configlib import to_plain
from benchmark.core.errors import QarmBenchError
from benchmark.core.records import SuiteResults
from benchmark.core.runs import LATEST, resolve_run
from benchmark.report.html import STYLE
from benchmark.report.primary import PrimaryFamily, PrimaryHypothesis, PrimaryRecord, primary_family
from benchmark.report.stats import Unit, fmt_p
from benchmark.report.tables import model_order
from benchmark.report.write import load_manifest, sweep_folders


@dataclass(frozen=True)
class ComparedRun:
    """One compared run: its label in the table, its folder, what the invocation was, and its primary family."""

    label: str
    folder: str
    suite: str
    run_id: str
    sweep: str
    quick: bool
    overrides: dict[str, str]
    seeds: tuple[int, ...]
    family: PrimaryFamily


def _expand(folder: Path) -> list[Path]:
    """A run folder -> [itself]; a sweep's run folder or its sweep/ folder -> each value's folder."""
    if (folder / "results.json").is_file():
        return [folder]
    return sweep_folders(folder.parent) if folder.name == "sweep" else sweep_folders(folder)


def compare_targets(arg: str, runs_dir: Path) -> list[Path]:
    """The run folders (each holding results.json) an argument of `compare` names: a run folder, a suite folder
    or a suite name under runs_dir (its latest complete run), or a sweep (every value)."""
    path = Path(arg)
    if path.is_dir() and not (path / LATEST).exists():
        found = _expand(path)
        if found:
            return found
    suite_dir = path if path.is_dir() else runs_dir / arg
    if suite_dir.is_dir():
        found = _expand(resolve_run(suite_dir))
        if found:
            return found
    raise QarmBenchError(f"{arg}: expected a run folder holding results.json, a sweep folder, or a suite with a "
                         f"complete run (a folder, or a name under {runs_dir}); found none")


def per_seed_auc(results: SuiteResults) -> dict[tuple[str, str, str], dict[Unit, float]]:
    """(model, variant, slice) -> {(split seed, replicate seed): test AUC} of the run's cells (an undefined AUC
    stays out)."""
    out: dict[tuple[str, str, str], dict[Unit, float]] = defaultdict(dict)
    for cell in results.cells:
        for slice_name, metrics in cell.test.items():
            auc = metrics.get("auc")
            if auc is not None and math.isfinite(auc):
                out[(cell.model, cell.variant, slice_name)][(int(cell.split_seed), int(cell.seed))] = float(auc)
    return dict(out)


def compare_runs(folders: list[Path], hypothesis: PrimaryHypothesis | None = None) -> list[ComparedRun]:
    """Each folder's primary family, labelled `<suite> <run-id> [<sweep value>]` (unique: `#2` on a repeat; a
    manifest from before run folders has no run id)."""
    hypothesis = hypothesis or PrimaryHypothesis()
    runs, seen = [], defaultdict(int)
    for folder in folders:
        res = load_manifest(folder)
        label = f"{res.suite} {res.run_id or '(before run folders)'}" + (f" [{res.label}]" if res.label else "")
        seen[label] += 1
        label += f" #{seen[label]}" if seen[label] > 1 else ""
        family = primary_family(hypothesis, per_seed_auc(res), res.models)
        runs.append(ComparedRun(label=label, folder=str(folder), suite=res.suite, run_id=res.run_id,
                                sweep=res.label, quick=res.quick, overrides=dict(res.overrides),
                                seeds=tuple(res.provenance.seeds), family=family))
    return runs


def _cells(runs: list[ComparedRun]) -> list[tuple[str, str, str, list[tuple[ComparedRun, PrimaryRecord]]]]:
    """(model, slice, baseline, [(run, record)]) in table order: model, slice, contrast, then run."""
    hyp = runs[0].family.hypothesis
    models = model_order({r.model for run in runs for r in run.family.records})
    groups = []
    for model in models:
        for slice_name in hyp.slices:
            for c in hyp.contrasts:
                pairs = [(run, r) for run in runs for r in run.family.records
                         if (r.model, r.slice, r.variant, r.baseline) == (model, slice_name, c.variant, c.baseline)]
                if pairs:
                    groups.append((model, slice_name, c.baseline, pairs))
    return groups


def _f(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def _delta(r: PrimaryRecord) -> str:
    ci = "" if r.ci_low is None else f" [{r.ci_low:+.4f}, {r.ci_high:+.4f}]"
    return _f(r.delta, "+.4f") + ci


def _invocation(run: ComparedRun) -> str:
    what = ("--quick" if run.quick else "full") + (f", {len(run.overrides)} override(s): "
                                                   + ", ".join(f"{k}={v}" for k, v in run.overrides.items())
                                                   if run.overrides else "")
    return f"{run.folder} (seeds {list(run.seeds)}; {what}; family m = {run.family.size})"


def render_compare(runs: list[ComparedRun]) -> str:
    """Markdown: the runs, then one line per (model, slice, contrast, run)."""
    hyp = runs[0].family.hypothesis
    out = ["# QARM-Bench compare: aligned_codes against its baselines, test AUC", "",
           f"Per run: Δ = mean over seeds of the paired difference (variant − baseline), its {1 - hyp.alpha:.0%} t "
           f"interval, Holm's p over that run's whole primary family (m tests), verdict as the run's primary "
           "family gives it (benchmark.report.primary). – : the contrast's cells are missing or under 2 seeds.", ""]
    out += [f"- **{run.label}**: {_invocation(run)}" for run in runs]
    out += ["", f"| model | slice | contrast | run | seeds | Δ AUC [{1 - hyp.alpha:.0%} CI] | p | Holm p | verdict |",
            "|---|---|---|---|---|---|---|---|---|"]
    for model, slice_name, baseline, pairs in _cells(runs):
        for run, r in pairs:
            out.append(f"| {model} | {slice_name} | {r.variant} vs {baseline} | {run.label} | {r.n} | "
                       f"{_delta(r)} | {fmt_p(r.p, hyp.alpha)} | {fmt_p(r.p_holm, hyp.alpha)} | {r.verdict} |")
    return "\n".join(out) + "\n"


def compare_json(runs: list[ComparedRun]) -> dict[str, Any]:
    """{"runs": [...], "contrasts": [{"run": label, <PrimaryRecord fields>}, ...]} (no NaN: undefined is null)."""
    return {"runs": [{"label": r.label, "folder": r.folder, "suite": r.suite, "run_id": r.run_id, "sweep": r.sweep,
                      "quick": r.quick, "overrides": r.overrides, "seeds": list(r.seeds),
                      "family_size": r.family.size} for r in runs],
            "contrasts": [{"run": run.label, **to_plain(r)} for _, _, _, pairs in _cells(runs) for run, r in pairs]}


def forest_png(runs: list[ComparedRun]) -> bytes:
    """The forest plot: one panel per (model, slice); per contrast one point per run (colour), its t interval;
    filled when Holm's p < alpha; the zero line drawn. PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hyp = runs[0].family.hypothesis
    groups = _cells(runs)
    models = list(dict.fromkeys(g[0] for g in groups)) or ["–"]
    slices = list(hyp.slices)
    n, k = len(runs), len(hyp.contrasts)
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(models), len(slices), squeeze=False,
                             figsize=(4.6 * len(slices), (0.28 * k * (n + 1) + 1.4) * len(models)))
    for i, model in enumerate(models):
        for j, slice_name in enumerate(slices):
            ax = axes[i][j]
            ax.axvline(0.0, color="black", lw=1)
            for g, c in enumerate(hyp.contrasts):
                for ri, run in enumerate(runs):
                    r = next((r for r in run.family.records if (r.model, r.slice, r.variant, r.baseline)
                              == (model, slice_name, c.variant, c.baseline)), None)
                    if r is None or r.delta is None:
                        continue
                    y, col = g * (n + 1) + ri, colours(ri % 10)
                    if r.ci_low is not None:
                        ax.errorbar(r.delta, y, xerr=[[r.delta - r.ci_low], [r.ci_high - r.delta]], fmt="none",
                                    ecolor=col, capsize=2, lw=1.3)
                    sig = r.p_holm is not None and r.p_holm < hyp.alpha
                    ax.plot(r.delta, y, "o", ms=6, color=col if sig else "white", mec=col, mew=1.5)
            ax.set_yticks([g * (n + 1) + (n - 1) / 2 for g in range(k)],
                          [f"vs {c.baseline}" if j == 0 else "" for c in hyp.contrasts], fontsize=8)
            ax.set_ylim(k * (n + 1) - 0.5, -0.8)
            ax.set_title(f"{model} · {slice_name}", fontsize=9)
            ax.tick_params(axis="x", labelsize=8)
            if i == len(models) - 1:
                ax.set_xlabel("Δ test AUC (aligned_codes − baseline)", fontsize=8)
    handles = [plt.Line2D([], [], ls="", marker="o", color=colours(ri % 10), label=run.label)
               for ri, run in enumerate(runs)]
    fig.suptitle(f"aligned_codes vs its baselines per run; {1 - hyp.alpha:.0%} t interval; filled: Holm p < "
                 f"{hyp.alpha} within the run's primary family", fontsize=10)
    fig.legend(handles=handles, loc="lower center", ncol=min(n, 3), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(n / 3), 1, 0.95))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def compare_html(runs: list[ComparedRun]) -> str:
    """One self-contained page: the runs, the forest plot (embedded PNG) and the table."""
    e = html.escape
    hyp = runs[0].family.hypothesis
    png = base64.b64encode(forest_png(runs)).decode("ascii")
    rows = []
    for model, slice_name, baseline, pairs in _cells(runs):
        for run, r in pairs:
            cls = ' class="sig"' if r.p_holm is not None and r.p_holm < hyp.alpha else ""
            rows.append(f"<tr{cls}>" + "".join(f'<td class="l">{e(x)}</td>' for x in
                                               (model, slice_name, f"{r.variant} vs {baseline}", run.label))
                        + "".join(f"<td>{e(x)}</td>" for x in (str(r.n), _delta(r), fmt_p(r.p, hyp.alpha),
                                                               fmt_p(r.p_holm, hyp.alpha), r.verdict)) + "</tr>")
    head = "".join(f'<th class="l">{h}</th>' for h in ("model", "slice", "contrast", "run")) + "".join(
        f"<th>{h}</th>" for h in ("seeds", f"Δ AUC [{1 - hyp.alpha:.0%} CI]", "p", "Holm p", "verdict"))
    runs_list = "".join(f"<li><b>{e(run.label)}</b>: {e(_invocation(run))}</li>" for run in runs)
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>QARM-Bench compare</title><style>{STYLE}</style></head><body>",
        "<h1>QARM-Bench compare: aligned_codes against its baselines, test AUC</h1>",
        f"<p class=muted>{e(render_compare(runs).split(chr(10))[2])}</p>", f"<ul>{runs_list}</ul>",
        f'<figure><img src="data:image/png;base64,{png}" alt="forest plot"><figcaption>Δ test AUC per run, '
        "model and slice</figcaption></figure>",
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>", "</body></html>"]) + "\n"


def add_arguments(p: Any) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="a run folder (holding results.json), a suite name or folder (its latest complete run), or a "
                        "sweep (a sweep's run folder or its sweep/ folder: every value)")
    p.add_argument("--runs-dir", default="runs", help="where suites live (default: runs)")
    p.add_argument("--json", action="store_true", help="print the runs and contrasts as JSON instead of markdown")
    p.add_argument("--html", default=None, metavar="OUT", help="also write one self-contained page (forest plot "
                                                               "embedded) to OUT")


def main_compare(args: Any) -> int:
    folders = [f for arg in args.runs for f in compare_targets(arg, Path(args.runs_dir))]
    runs = compare_runs(folders)
    print(json.dumps(compare_json(runs), indent=1) if args.json else render_compare(runs))
    if args.html:
        out = Path(args.html)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(compare_html(runs), encoding="utf-8")
        tmp.replace(out)
        print(f"HTML: {out}", file=sys.stderr if args.json else sys.stdout)
    return 0
