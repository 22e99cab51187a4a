"""`qarm-bench perf scale` at a tiny size (in-process, so it takes seconds), and its helpers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.core.errors import ConfigError
from benchmark.perf.scale import parse_sizes
from benchmark.perf.scale_report import exponent, groups, item_side, markdown, step_exponents


def test_parse_sizes_and_exponent() -> None:
    assert parse_sizes("1e6, 3e6,1e7,1e6") == [1_000_000, 3_000_000, 10_000_000]
    with pytest.raises(ConfigError, match="--interactions"):
        parse_sizes("many")
    assert exponent([(10, 2.0), (100, 20.0), (1000, 200.0)]) == pytest.approx(1.0)  # linear
    assert exponent([(10, 1.0), (100, 100.0)]) == pytest.approx(2.0)  # quadratic
    assert exponent([(10, 1.0)]) is None


def test_groups_sum_code_sets_and_keep_the_largest_peak() -> None:
    rows = [{"interactions": 5, "entry": "codes/a", "stage": "codes", "status": "ok", "compute_s": 1.0,
             "peak_rss_gb": 2.0},
            {"interactions": 5, "entry": "codes/b", "stage": "codes", "status": "ok", "compute_s": 3.0,
             "peak_rss_gb": 1.0},
            {"interactions": 5, "entry": "rank/din/id_only", "stage": "rank", "status": "timeout", "wall_s": 9.0,
             "peak_rss_gb": 4.0}]
    g = groups(rows)
    assert g["codes"][5]["compute_s"] == 4.0 and g["codes"][5]["peak_rss_gb"] == 2.0
    assert g["rank/din/id_only"][5]["status"] == "timeout"
    assert "| rank/din/id_only | timeout | timeout |" in markdown({"rows": rows, "runs": []})


def test_item_side_line_sums_the_item_stages_and_gives_each_step_its_exponent() -> None:
    def row(n: int, entry: str, s: float, gb: float) -> dict[str, object]:
        return {"interactions": n, "entry": entry, "stage": entry.split("/")[0], "status": "ok", "compute_s": s,
                "wall_s": s + 1, "peak_rss_gb": gb}

    rows = [r for n, k in ((10, 1), (100, 10), (1000, 200)) for r in (
        row(n, "data", 1.0 * k, 1.0), row(n, "pairs", 2.0 * k, 3.0), row(n, "codes/a", 1.0 * k, 0.5),
        row(n, "rank/dlrm/id_only", 50.0 * k, 9.0))]
    side = item_side(groups(rows))
    assert side[100]["compute_s"] == 40.0 and side[100]["peak_rss_gb"] == 3.0 and side[100]["wall_s"] == 43.0
    assert step_exponents([(10, 4.0), (100, 40.0), (1000, 800.0)]) == pytest.approx([1.0, math.log10(20)])
    md = markdown({"rows": rows, "runs": []})
    assert "| **item side** | 4.0 | 3.00 | 40.0 | 3.00 | 800.0 | 3.00 |" in md and "| 1.00, 1.30 |" in md


@pytest.mark.slow
def test_scale_command_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["perf", "scale", "--json", "--config", "synthetic-tiny", "--interactions", "600",
            "--interactions-per-user", "20", "--interactions-per-item", "20", "--models", "dlrm",
            "--variants", "id_only", "--isolation", "none", "--out", str(out),
            "--set", "encoder.kind=synthetic", "--set", "encoder.synthetic.dim=8", "--set", "suite.seeds=[0]",
            "--set", "data.synthetic.n_clusters=3", "--set", "quantize.rq_vae.epochs=1"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    entries = [r["entry"] for r in res["rows"]]
    assert entries[:5] == ["baseline", "data", "pairs", "frozen", "align"] and entries[-1] == "rank/dlrm/id_only"
    assert all(r["status"] == "ok" and r["interactions"] == 600 for r in res["rows"])
    data = next(r for r in res["rows"] if r["entry"] == "data")
    assert data["facts"]["users"] == 30 and data["facts"]["items"] == 30 and data["facts"]["impressions"] == 600
    assert (out / "scale.png").stat().st_size > 0 and "| data |" in (out / "scale.md").read_text()
    assert not (out / "work" / "n600" / "artifacts").exists()  # removed unless --keep


def test_item_side_only_over_leaves_the_cells_out_above_the_size() -> None:
    import argparse

    from benchmark.config.suite import load_config
    from benchmark.perf.scale import tasks_of

    cfg = load_config("synthetic-scale", [])
    args = argparse.Namespace(item_side_only_over=2e6, skip_rank_over=0.0)
    small = [label for label, _ in tasks_of(cfg, args, 1_000_000)]
    big = [label for label, _ in tasks_of(cfg, args, 3_000_000)]
    assert any(x.startswith("rank/din/") for x in small) and not any(x.startswith("rank/") for x in big)
    assert [x for x in small if not x.startswith("rank/")] == big  # the item side is the same
