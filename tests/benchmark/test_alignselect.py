"""`qarm-bench align-select` chooses on the validation pairs and reads the test pairs once, for the chosen
settings only (benchmark/engine/alignselect.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.config.suite import load_config
from benchmark.core.errors import ConfigError
from benchmark.engine.alignselect import align_side, parse_grid, select

GRID = [("align.lr", ["2e-3", "5e-3"]), ("align.popularity_correction", ["0", "1"])]


def test_the_choice_is_the_best_mean_validation_recall_and_test_is_the_chosen_models(tmp_path: Path) -> None:
    from benchmark.engine.alignrefs import compute_references

    sets = [f"suite.runs_dir={tmp_path}"]
    sel = select("synthetic-tiny", GRID, sets, (0, 1))
    assert [c.settings for c in sel.candidates] == [
        {"align.lr": lr, "align.popularity_correction": pc} for lr in ("2e-3", "5e-3") for pc in ("0", "1")]
    means = [sum(c.val_recall.values()) / 2 for c in sel.candidates]
    assert sel.chosen == max(range(4), key=lambda i: (means[i], -i))
    assert all(math.isfinite(v) for c in sel.candidates for v in c.val_recall.values())
    # the test figure is the chosen settings' held-out test recall, as `align-refs` measures it on the same pairs
    chosen = sel.candidates[sel.chosen].settings
    cfg = load_config("synthetic-tiny", [*sets, "align.refit=false", *(f"{k}={v}" for k, v in chosen.items())])
    for seed in (0, 1):
        refs = compute_references(cfg, seed)
        assert sel.test_recall[seed] == pytest.approx(refs.row("aligned").recall.overall, abs=1e-12)
        assert sel.frozen_test_recall[seed] == pytest.approx(refs.row("frozen").recall.overall, abs=1e-12)
    # a candidate's validation recall is its alignment summary's (what early stopping chose the epoch on)
    other = next(i for i in range(4) if i != sel.chosen)
    ocfg = load_config("synthetic-tiny", [*sets, "align.refit=false",
                                          *(f"{k}={v}" for k, v in sel.candidates[other].settings.items())])
    assert align_side(ocfg, 0, "cpu")["align"].summary.val_recall == sel.candidates[other].val_recall[0]


def test_cli_writes_the_selection_without_the_other_candidates_test_figures(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    rc = main(["align-select", "synthetic-tiny", "--grid", "align.lr=2e-3,5e-3", "--seeds", "0",
               "--set", f"suite.runs_dir={tmp_path}", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["test_recall"]) == {"0"} and len(out["candidates"]) == 2
    assert all(set(c) == {"settings", "val_recall", "best_epoch"} for c in out["candidates"])
    md = (tmp_path / "synthetic-tiny" / "alignment_selection.md").read_text()
    assert md.count("**chosen**") == 1 and "Test pair recall@10 of the chosen settings" in md


@pytest.mark.parametrize(("grid", "match"), [
    (["align.lr"], "expected KEY=V1,V2"),
    (["rank.epochs=1,2"], "expected an align.\\* setting"),
    (["align.lr=1,1"], "distinct values"),
    ([], "at least one"),
])
def test_bad_grids_are_refused(grid: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_grid(grid)


def test_cli_bad_grid_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["align-select", "synthetic-tiny", "--grid", "rank.epochs=1,2",
                 "--set", f"suite.runs_dir={tmp_path}"]) == 2
    assert "align.* setting" in capsys.readouterr().err
