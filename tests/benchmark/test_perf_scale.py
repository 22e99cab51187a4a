"""`qarm-bench perf scale` at a tiny size (in-process, so it takes seconds), and its helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.core.errors import ConfigError
from benchmark.perf.scale import parse_sizes
from benchmark.perf.scale_report import exponent, groups, markdown


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
