"""`qarm-bench reference-results`: docs/reference-results.md from the committed reference runs.

    docs/reference/<suite>/report.json    the run's report rows (benchmark.report.tables.ROW_KEYS), as written
    docs/reference/<suite>/meta.json      RunMeta: invocation, date, git SHA, wall time (and how it was measured),
                                          machine
    load_reference(folder) -> Reference   both, checked (a missing or malformed file names itself)
    render_reference_page(dir) -> str     per packaged suite: its run's test-AUC table, or "not yet run here"
    add_reference(run, ...) -> Path       a finished run folder -> docs/reference/<suite>/ (report.json copied,
                                          meta.json from its results.json and the given invocation / wall time);
                                          a sweep's run folder: every value's rows, each with its `sweep_value`

Every figure on the page is copied from report.json (formatted to 4 decimals), never typed by hand;
tests/benchmark/test_reference.py parses the page's tables back and compares them with the JSON rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.config.suite import packaged_configs
from benchmark.core.configlib import from_mapping, to_plain
from benchmark.core.errors import QarmBenchError
from benchmark.report.tables import MAIN_SLICES, ROW_KEYS, model_order

REQUIRED_KEYS = ROW_KEYS[:ROW_KEYS.index("modalities") + 1]  # the keys of every report.json ever written

REFERENCE_DIR = Path("docs/reference")
PAGE = Path("docs/reference-results.md")
# the columns of a suite's table: (header, report.json key, signed)
COLUMNS = (("AUC", "mean", False), ("std", "std", False), ("CI low", "ci_low", False), ("CI high", "ci_high", False),
           ("Δ vs id_only", "delta_vs_id_only", True), ("Δ CI low", "delta_ci_low", True),
           ("Δ CI high", "delta_ci_high", True), ("Holm p", "p_value_holm", False))


@dataclass(frozen=True)
class RunMeta:
    """How a reference run was made. wall_time: m:ss or h:mm:ss as measured; wall_time_note: how, and under
    what load (a time measured on a shared machine is not a speed figure)."""

    suite: str
    config: str
    invocation: str
    date: str
    started: str
    git_sha: str
    config_hash: str
    wall_time: str
    wall_time_note: str
    machine: str
    seeds: tuple[int, ...]
    source: str = ""


@dataclass(frozen=True)
class Reference:
    """One committed reference run: its metadata and its report.json rows."""

    meta: RunMeta
    rows: list[dict[str, Any]]


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QarmBenchError(f"{path}: missing; a reference run needs report.json and meta.json") from None
    except (OSError, json.JSONDecodeError) as e:
        raise QarmBenchError(f"{path}: unreadable JSON ({e})") from None


def load_reference(folder: Path) -> Reference:
    """docs/reference/<suite>/{meta,report}.json, checked: meta strictly as RunMeta, the rows as a list of
    objects with every key of ROW_KEYS as the run wrote them (keys added to ROW_KEYS later may be absent)."""
    try:
        meta = from_mapping(RunMeta, _read(folder / "meta.json"))
    except QarmBenchError as e:
        raise QarmBenchError(f"{folder / 'meta.json'}: {e}") from None
    rows = _read(folder / "report.json")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and set(REQUIRED_KEYS) <= set(r) for r in rows):
        raise QarmBenchError(f"{folder / 'report.json'}: expected a list of report rows with the keys {REQUIRED_KEYS}")
    if meta.suite != folder.name:
        raise QarmBenchError(f"{folder / 'meta.json'}: suite: expected '{folder.name}' (the folder), got "
                             f"'{meta.suite}'")
    return Reference(meta, rows)


def auc_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the page shows: test AUC on the all, cold and warm slices, by sweep value (a sweep's rows carry
    `sweep_value`, in the sweep's order), model, variant order, slice."""
    picked = [r for r in rows if r["metric"] == "auc" and r["slice"] in MAIN_SLICES]
    values = list(dict.fromkeys(r.get("sweep_value", "") for r in picked))
    models = model_order(r["model"] for r in picked)
    variants = list(dict.fromkeys(r["variant"] for r in picked))
    return sorted(picked, key=lambda r: (values.index(r.get("sweep_value", "")), models.index(r["model"]),
                                         variants.index(r["variant"]), MAIN_SLICES.index(r["slice"])))


def cell(value: float | None, signed: bool = False) -> str:
    """A figure as the page prints it: 4 decimals, – for null."""
    return "–" if value is None else (f"{value:+.4f}" if signed else f"{value:.4f}")


def suite_section(ref: Reference) -> list[str]:
    m = ref.meta
    out = [f"## {m.suite}", "",
           f"- config: `{m.config}`; invocation: `{m.invocation}`",
           f"- date: {m.date} (started {m.started}); git {m.git_sha}; config hash {m.config_hash}; seeds "
           f"{list(m.seeds)}",
           f"- wall time: {m.wall_time} ({m.wall_time_note})",
           f"- machine: {m.machine}",
           *([f"- source: {m.source}"] if m.source else []), "",
           "Test AUC over seeds (mean, sample std, 95% t interval); Δ vs id_only paired over seeds with its t "
           "interval; Holm p within model × slice × metric (report.json's `p_value_holm`)"
           + ("; one table per sweep value, each value its own report." if any("sweep_value" in r for r in ref.rows)
              else "."), ""]
    header = ["| model | variant | slice | " + " | ".join(h for h, _, _ in COLUMNS) + " | seeds |",
              "|---|---|---|" + "---|" * (len(COLUMNS) + 1)]
    value = None
    for r in auc_rows(ref.rows):
        if r.get("sweep_value", "") != value:
            value = r.get("sweep_value", "")
            out += ([f"### {value}", ""] if value else []) + header
        out.append(f"| {r['model']} | {r['variant']} | {r['slice']} | "
                   + " | ".join(cell(r[k], s) for _, k, s in COLUMNS) + f" | {r['n_seeds']} |")
    return out


def render_reference_page(reference_dir: Path = REFERENCE_DIR) -> str:
    """The page: every packaged suite, with its reference run's table or "not yet run here"."""
    suites = [p.stem for p in packaged_configs()]
    done = [s for s in suites if (reference_dir / s).is_dir()]
    extra = sorted(p.name for p in reference_dir.glob("*") if p.is_dir() and p.name not in suites)
    if extra:
        raise QarmBenchError(f"{reference_dir}: {', '.join(extra)}: not a packaged suite (benchmark/configs/*.toml)")
    out = ["# Reference results", "",
           "Written by `qarm-bench reference-results` from the committed runs under `docs/reference/<suite>/` "
           "(`report.json`: the run's report rows; `meta.json`: invocation, date, git SHA, wall time, machine). "
           "Every figure below is copied from that `report.json`; `tests/benchmark/test_reference.py` checks them. "
           "Do not edit by hand: add a run's `report.json` and `meta.json` and rerun the command.", ""]
    out += ["| suite | status |", "|---|---|"]
    out += [f"| {s} | {'reference run below' if s in done else 'not yet run here'} |" for s in suites]
    for s in done:
        out += ["", *suite_section(load_reference(reference_dir / s))]
    return "\n".join(out) + "\n"


def add_reference(run: Path, *, invocation: str, wall_time: str, wall_time_note: str, machine: str,
                  reference_dir: Path = REFERENCE_DIR) -> Path:
    """Commit-ready copy of a finished run: its report.json as written and a meta.json (RunMeta) whose suite, date,
    start, git SHA, config hash and seeds come from the run's results.json; invocation, wall time (m:ss or
    h:mm:ss as measured), how it was measured and the machine are the caller's. The suite must be packaged; a
    run with --set overrides or --quick is refused (its figures are not the packaged suite's). Returns the
    folder."""
    from benchmark.report.write import load_manifest, sweep_folders, sweep_position

    values = sweep_folders(run)  # a sweep's run folder: every value, its rows labelled with the value
    if values:
        loaded = sorted(((load_manifest(v), v) for v in values), key=lambda item: sweep_position(item[0]))
    else:
        loaded = [(load_manifest(run), run)]
        if loaded[0][0].label:
            raise QarmBenchError(f"{run}: one value ({loaded[0][0].label}) of a sweep; expected the sweep's run folder "
                                 f"(the one holding sweep/), {run.parent.parent}, so that every value is added")
    known = {p.stem: p for p in packaged_configs()}
    rows: list[dict[str, Any]] = []
    for res, folder in loaded:
        if res.suite not in known:
            raise QarmBenchError(f"{folder}: suite '{res.suite}' is not a packaged suite (benchmark/configs/*.toml)")
        extra = {k: v for k, v in res.overrides.items() if k != "suite.runs_dir"}
        if res.quick or extra:
            raise QarmBenchError(f"{folder}: run with {'--quick' if res.quick else ''} {extra or ''}: a reference run "
                                 "is the packaged suite as it is (only suite.runs_dir may be set)")
        got = _read(folder / "report.json")
        rows += [{**r, "sweep_value": res.label} for r in got] if values else got
    res = loaded[0][0]
    meta = RunMeta(suite=res.suite, config=f"benchmark/configs/{known[res.suite].name}", invocation=invocation,
                   date=res.provenance.date[:10], started=res.provenance.date, git_sha=res.provenance.git_sha,
                   config_hash=res.provenance.config_hash, wall_time=wall_time, wall_time_note=wall_time_note,
                   machine=machine, seeds=tuple(res.provenance.seeds),
                   source=f"<runs_dir>/{res.suite}/{res.run_id or run.name}/"
                          + ("sweep/<value>/report.json, every value" if values else "report.json"))
    out = reference_dir / res.suite
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    (out / "meta.json").write_text(json.dumps(to_plain(meta), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    load_reference(out)  # what was written reads back
    return out


def add_arguments(p: Any) -> None:
    p.add_argument("--out", default=str(PAGE), help=f"the page to write (default: {PAGE})")
    p.add_argument("--reference-dir", default=str(REFERENCE_DIR),
                   help=f"the committed runs, one folder per suite (default: {REFERENCE_DIR})")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when the page differs from what would be written")
    p.add_argument("--add", default=None, metavar="RUN",
                   help="first copy a finished run folder's report.json into <reference-dir>/<suite>/ with a meta.json "
                        "(needs --invocation, --wall-time, --wall-time-note, --machine)")
    p.add_argument("--invocation", default="", help="with --add: the command that made the run")
    p.add_argument("--wall-time", default="", help="with --add: its wall time as measured (m:ss or h:mm:ss)")
    p.add_argument("--wall-time-note", default="", help="with --add: how it was measured, under what load")
    p.add_argument("--machine", default="", help="with --add: the machine, in words")


def main_reference(args: Any) -> int:
    if args.add:
        missing = [f"--{k.replace('_', '-')}" for k in ("invocation", "wall_time", "wall_time_note", "machine")
                   if not getattr(args, k)]
        if missing:
            raise QarmBenchError(f"reference-results --add: expected {', '.join(missing)} too (meta.json records them)")
        added = add_reference(Path(args.add), invocation=args.invocation, wall_time=args.wall_time,
                              wall_time_note=args.wall_time_note, machine=args.machine,
                              reference_dir=Path(args.reference_dir))
        print(f"added {added}")
    page = render_reference_page(Path(args.reference_dir))
    out = Path(args.out)
    if args.check:
        same = out.is_file() and out.read_text(encoding="utf-8") == page
        print(f"{out}: {'up to date' if same else 'out of date; run `qarm-bench reference-results`'}")
        return 0 if same else 1
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out}")
    return 0
