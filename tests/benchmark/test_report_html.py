"""report.html (self-contained page) and the forest plot, on a hand-written three-seed manifest."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.core.records import (
    CellRecord,
    CodeSetRecord,
    ItemSideRecord,
    Provenance,
    SuiteResults,
    to_json,
)
from benchmark.report.html import render_html, write_html
from benchmark.report.plots import forest_plot, make_all
from benchmark.report.tables import aggregate
from qarm.alignment.config import AlignSummary
from qarm.pairs.records import PairStats

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _manifest() -> SuiteResults:
    cells = []
    for seed, (base, qarm) in enumerate([(0.70, 0.72), (0.71, 0.74), (0.69, 0.70)]):
        for variant, auc in (("id_only", base), ("aligned_codes", qarm), ("codes_only", base - 0.01)):
            cells.append(CellRecord(model="dlrm", variant=variant, seed=seed, key=f"{variant}{seed}", best_epoch=1,
                                    val_best={}, history=(),
                                    test={s: {"auc": auc, "gauc": auc - 0.1, "logloss": 0.6} for s in ("all", "cold")}))
    prov = Provenance(config_hash="abc", git_sha="123", dataset="d", dataset_fingerprint="f", split="s",
                      seeds=(0, 1, 2), date="2026-11-28", version="0")
    pairs = PairStats(n_items=4, n_train_positives=9, sources=("u2i",), n_pairs=3, pairs_per_source={"u2i": 3},
                      raw_pairs_per_source={"u2i": 4}, unique_pairs_found_per_source={"u2i": 3},
                      pairs_in_both_sources=0, item_coverage=0.75, item_coverage_per_source={"u2i": 0.75})
    align = AlignSummary(k=10, frozen_recall=0.1, aligned_recall=0.2, best_epoch=1, history=(), n_train_pairs=2,
                         n_val_pairs=1, trained="projection head over frozen encoder features")
    side = ItemSideRecord(seed=0, stage_keys={"data": "fp1"}, pair_stats=pairs, alignment=align,
                          code_sets=(CodeSetRecord("aligned_rq_kmeans", "rq",
                                                   {"collision_rate": 0.5, "utilisation": [1.0, 0.5]}),))
    return SuiteResults(suite="s<x>", label="", variants=("id_only", "aligned_codes", "codes_only"), models=("dlrm",),
                        confidence=0.95, provenance=prov,
                        config={"suite": {"description": "A suite & its <description>"}},
                        data_stats={"users": 3, "nested": {"not": "shown"}}, item_side=(side,), cells=tuple(cells))


@pytest.fixture(scope="module")
def plotted(tmp_path_factory: pytest.TempPathFactory) -> tuple[SuiteResults, list[dict], Path]:
    """The manifest with every plot drawn once for this module: (manifest with `plots`, rows, suite folder)."""
    suite_dir = tmp_path_factory.mktemp("suite")
    m = _manifest()
    m = dataclasses.replace(m, plots=tuple(str(p.relative_to(suite_dir)) for p in make_all(m, suite_dir / "plots")))
    return m, aggregate(m.cells), suite_dir


def test_forest_plot_in_make_all_and_holm_branch(plotted: tuple[dict, list[dict], Path], tmp_path: Path) -> None:
    m, rows, suite_dir = plotted
    assert m.plots[0] == "plots/forest_auc.png" and "plots/auc_by_variant.png" in m.plots  # existing stay
    assert all((suite_dir / p).read_bytes()[:8] == PNG_MAGIC for p in m.plots)
    raw = [{k: v for k, v in r.items() if k != "p_value_holm"} for r in rows]  # rows without Holm: raw p decides
    assert forest_plot(raw, "auc", m.variants, tmp_path / "h.png").read_bytes()[:8] == PNG_MAGIC


def test_html_is_self_contained_and_escaped(plotted: tuple[dict, list[dict], Path]) -> None:
    m, rows, tmp_path = plotted
    n_plots = len(m.plots)
    m = dataclasses.replace(m, plots=(*m.plots, "plots/missing.png"))
    page = render_html(m, rows, tmp_path)
    imgs = re.findall(r'<img src="([^"]+)"', page)
    assert len(imgs) == n_plots  # a plot missing on disk is left out, not linked
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    # no external asset of any kind, no script
    assert not re.search(r'(src|href)="(?!data:)', page) and "<script" not in page and "<link" not in page
    assert page.index('alt="Δ test AUC vs id_only per variant') < page.index("Ranking metrics")  # forest first
    assert "A suite &amp; its &lt;description&gt;" in page and "s&lt;x&gt;" in page
    assert "<td class=\"l\">aligned_codes</td>" in page and "significant" in page
    assert "Code quality" in page and "Provenance" in page and "fp1" in page and "nested" not in page
    path = write_html(tmp_path, m, rows)
    assert path == tmp_path / "report.html" and path.read_text(encoding="utf-8") == page


def test_report_html_flag_writes_next_to_report_md(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite_dir = tmp_path / "runs" / "s"
    suite_dir.mkdir(parents=True)
    (suite_dir / "results.json").write_text(json.dumps(to_json(_manifest())))
    assert main(["report", "s", "--runs-dir", str(tmp_path / "runs"), "--html"]) == 0
    out = capsys.readouterr().out
    html = suite_dir / "report.html"
    assert f"HTML report: {html}" in out and html.exists() and (suite_dir / "report.md").exists()
    assert (suite_dir / "plots" / "forest_auc.png").exists()
    assert html.read_text(encoding="utf-8").count("data:image/png;base64,") >= 4
    # under --json, stdout stays pure JSON and the path goes to stderr
    assert main(["report", "s", "--runs-dir", str(tmp_path / "runs"), "--json", "--html"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) and "HTML report:" in captured.err


def test_html_carries_every_section_of_the_markdown(plotted: tuple[dict, list[dict], Path]) -> None:
    """Issue 23 point 5: report.html has report.md's sections and numbers in the same format, plots full width
    with click-to-enlarge, and no raw float in the data table."""
    import html as std_html

    from benchmark.report.tables import render_markdown

    m, rows, tmp_path = plotted
    m = dataclasses.replace(m, data_stats={"users": 943, "history_empty_share": 0.06040992448759439})
    page = render_html(m, rows, tmp_path)
    md = render_markdown(m, rows)
    for heading in re.findall(r"^## (.+)$", md, flags=re.M):
        if heading != "Plots":
            assert f">{std_html.escape(heading)}</h2>" in page, heading
    table_rows = [ln for ln in md.splitlines() if ln.startswith("| dlrm |")]  # ranking, parameters, ...
    assert table_rows
    for line in table_rows:  # every cell of every table row, formatted as in the markdown
        for cell in line.strip("|").split("|"):
            assert f">{std_html.escape(cell.strip())}</td>" in page, cell
    assert "(aligned = projection head over frozen encoder features)" in page and "<code>id_only</code>" in page
    assert "0.06040992448759439" not in page and "0.0604" in page and "943" in page
    assert page.count('class="zoom"') == len(m.plots) and "minmax(520px" not in page


def test_integer_axes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The utilisation plot's level axis and the alignment plot's epoch axis tick integers only."""
    from benchmark.report import plots
    from qarm.alignment.config import AlignEpoch

    ticks: list[list[float]] = []

    def keep(fig: object, path: Path) -> Path:
        fig.canvas.draw()
        ticks.append([float(t.get_text().replace("−", "-")) for t in fig.axes[0].get_xticklabels() if t.get_text()])
        return path

    monkeypatch.setattr(plots, "_save", keep)
    plots.codebook_utilisation({"a": {"utilisation": [1.0, 0.5, 0.25]}, "b": {"utilisation": [0.9, 0.4, 0.2]}},
                               tmp_path / "u.png")
    history = tuple(AlignEpoch(epoch=e, loss=1.0 / e, val_recall=0.1 * e) for e in (1, 2, 3))
    plots.alignment_curves(AlignSummary(k=10, frozen_recall=0.1, aligned_recall=0.2, best_epoch=3, history=history,
                                        n_train_pairs=2, n_val_pairs=1, trained="head"), tmp_path / "a.png")
    assert ticks[0] == [0, 1, 2]
    assert ticks[1] and all(t == int(t) for t in ticks[1])
