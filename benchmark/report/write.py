"""The one writer of a run's report files, and `qarm-bench report`.

    write_report(run_dir, results) -> Report     plots/, report.md, report.json, primary.json, report.html from
                                                 SuiteResults

Everything is computed from the run's `results.json` (benchmark.core.records.SuiteResults); nothing here
imports torch. `qarm-bench run` calls write_report once at the end of a run; `qarm-bench report` reads the
manifest back and calls the same function.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.core.cache import read_json, write_json
from benchmark.core.configlib import to_plain
from benchmark.core.errors import QarmBenchError
from benchmark.core.records import SuiteResults, from_json
from benchmark.core.runs import resolve_run
from benchmark.report import plots
from benchmark.report.html import write_html
from benchmark.report.primary import PrimaryFamily, results_family
from benchmark.report.tables import ROW_KEYS, aggregate, render_markdown


@dataclass(frozen=True)
class Report:
    """What write_report wrote: the markdown, the rows of report.json, the HTML page and the plots (relative to
    the run folder), and the primary family (primary.json; None when the suite has none)."""

    markdown: str
    rows: list[dict[str, Any]]
    html: Path
    plots: tuple[str, ...]
    primary: PrimaryFamily | None = None


def write_report(run_dir: Path, results: SuiteResults) -> Report:
    """Draw the plots and write report.md, report.json, primary.json (the primary family: its declaration, size
    and one record per test, benchmark.report.primary; only when the suite has one) and report.html under run_dir
    (each atomically)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    drawn = plots.make_all(results, run_dir / "plots")
    results = dataclasses.replace(results, plots=tuple(str(p.relative_to(run_dir)) for p in drawn))
    modalities = results.item_side[0].alignment.modalities if results.item_side else ()
    rows = aggregate(results.cells, results.confidence, modalities)
    family = results_family(results)
    md = render_markdown(results, rows, family)
    tmp = run_dir / ".report.md.tmp"
    tmp.write_text(md, encoding="utf-8")
    tmp.replace(run_dir / "report.md")
    write_json(run_dir / "report.json", rows)
    if family is not None:
        write_json(run_dir / "primary.json", to_plain(family))
    html = write_html(run_dir, results, rows)
    return Report(md, rows, html, results.plots, family)


def sweep_folders(run_dir: Path) -> list[Path]:
    """The value folders (sweep/<key>=<value>/) of a sweep's run folder that hold a results.json."""
    return sorted(p for p in (run_dir / "sweep").glob("*") if (p / "results.json").is_file())


def sweep_position(res: SuiteResults) -> int:
    """Where a sweep value's results stand in its sweep's own order (suite.sweep_values, not the folders'
    names': K = 128 sorts before 16 by name); a value not listed goes last."""
    order = [str(v) for v in res.config.get("suite", {}).get("sweep_values", [])]
    value = (res.label or "").rsplit("=", 1)[-1]
    return order.index(value) if value in order else len(order)


def load_manifest(run_dir: Path) -> SuiteResults:
    path = run_dir / "results.json"
    if not path.exists() and sweep_folders(run_dir):
        values = ", ".join(p.name for p in sweep_folders(run_dir))
        raise QarmBenchError(f"{path}: {run_dir.name} is a sweep; read one of its values under {run_dir / 'sweep'}: "
                             f"{values}")
    if not path.exists():
        raise QarmBenchError(f"{path}: no results here yet; run `qarm-bench run` first")
    try:
        manifest = read_json(path)
    except (OSError, json.JSONDecodeError) as e:
        raise QarmBenchError(f"{path}: unreadable results manifest ({e}); rerun `qarm-bench run`") from None
    return from_json(SuiteResults, manifest, path)


def suite_manifests(runs_dir: Path) -> dict[str, Path]:
    """suite name -> its newest results.json under runs_dir (`<suite>/results.json`, or under `<suite>/latest/`)."""
    out: dict[str, Path] = {}
    if not runs_dir.is_dir():
        return out
    for folder in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        found = [m for m in (folder / "results.json", folder / "latest" / "results.json") if m.is_file()]
        if found:
            out[folder.name] = max(found, key=lambda m: m.stat().st_mtime)
    return out


def pick_suite(runs_dir: Path) -> str:
    """The suite a bare `qarm-bench report` means: the only one in runs_dir, else the most recently run (named
    on stderr). A folder without runs/ is a QarmBenchError that hints --runs-dir."""
    if not runs_dir.is_dir():
        raise QarmBenchError(f"{runs_dir}: no runs folder here (cwd {Path.cwd()}); run `qarm-bench run` first, or "
                             "point at one with --runs-dir PATH")
    manifests = suite_manifests(runs_dir)
    if not manifests:
        raise QarmBenchError(f"{runs_dir}: no suite with results.json yet; run `qarm-bench run` first, or point "
                             "at another runs folder with --runs-dir PATH")
    suite = max(manifests, key=lambda s: manifests[s].stat().st_mtime)
    others = f" (the most recent of {len(manifests)}: {', '.join(sorted(manifests))})" if len(manifests) > 1 else ""
    print(f"qarm-bench report: suite '{suite}'{others}", file=sys.stderr)
    return suite


def main_report(args: Any) -> int:
    """`qarm-bench report SUITE [--run ID] [--json] [--html]`: rewrite the report files of the suite's latest
    complete run (or run ID) from its manifest and print the markdown (or, with --json, the rows; with --html,
    also the page's path). A sweep's run: every value's report, in order (--json: {label: rows})."""
    suite = args.suite or pick_suite(Path(args.runs_dir))
    run_dir = resolve_run(Path(args.runs_dir) / suite, args.run)
    folders = [run_dir] if (run_dir / "results.json").exists() or not sweep_folders(run_dir) else \
        sweep_folders(run_dir)
    as_json = {}
    for folder in folders:
        report = write_report(folder, load_manifest(folder))
        rows = [{k: r[k] for k in ROW_KEYS} for r in report.rows]
        if args.json:
            as_json[folder.name] = rows
        else:
            print(report.markdown)
        if args.html:  # stdout stays pure JSON under --json
            print(f"HTML report: {report.html}", file=sys.stderr if args.json else sys.stdout)
    if args.json:  # one run: its rows, as before; a sweep: rows per value
        print(json.dumps(as_json[run_dir.name] if folders == [run_dir] else as_json, indent=1))
    return 0
