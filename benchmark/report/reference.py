"""`qarm-bench reference-results`: docs/reference-results.md from the committed reference runs.

    docs/reference/<suite>/report.json    the run's report rows (benchmark.report.tables.ROW_KEYS), as written
    docs/reference/<suite>/meta.json      RunMeta: invocation, date, git SHA, wall time (and how it was measured),
                                          machine
    load_reference(folder) -> Reference   both, checked (a missing or malformed file names itself)
    render_reference_page(dir) -> str     per packaged suite: its run's test-AUC table, or "not yet run here"

Every figure on the page is copied from report.json (formatted to 4 decimals), never typed by hand;
tests/benchmark/test_reference.py parses the page's tables back and compares them with the JSON rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.config.suite import packaged_configs
from benchmark.core.configlib import from_mapping
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
    """The rows the page shows: test AUC on the all, cold and warm slices, by model, variant order, slice."""
    picked = [r for r in rows if r["metric"] == "auc" and r["slice"] in MAIN_SLICES]
    models = model_order(r["model"] for r in picked)
    variants = list(dict.fromkeys(r["variant"] for r in picked))
    return sorted(picked, key=lambda r: (models.index(r["model"]), variants.index(r["variant"]),
                                         MAIN_SLICES.index(r["slice"])))


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
           "interval; Holm p within model × slice × metric (report.json's `p_value_holm`).", "",
           "| model | variant | slice | " + " | ".join(h for h, _, _ in COLUMNS) + " | seeds |",
           "|---|---|---|" + "---|" * (len(COLUMNS) + 1)]
    for r in auc_rows(ref.rows):
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


def add_arguments(p: Any) -> None:
    p.add_argument("--out", default=str(PAGE), help=f"the page to write (default: {PAGE})")
    p.add_argument("--reference-dir", default=str(REFERENCE_DIR),
                   help=f"the committed runs, one folder per suite (default: {REFERENCE_DIR})")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when the page differs from what would be written")


def main_reference(args: Any) -> int:
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
