"""Each `qarm-bench perf` benchmark runs end to end at a tiny size and prints one JSON object.

No timing is asserted here (performance claims live in the benchmarks' own output); this only keeps the
benchmarks runnable."""

from __future__ import annotations

import json

import pytest

from benchmark.cli import main

TINY = {
    "quantize": ["--n", "600", "--levels", "2", "--codebook-size", "8", "--niter", "3", "--rqvae-sample", "300",
                 "--rqvae-epochs", "1", "--repeats", "1", "--clusters", "16"],
    "encode": ["--n", "8", "--repeats", "1"],
    "rank": ["--batch-size", "32", "--rows", "200", "--users", "50", "--hist", "8", "--codebook", "16",
             "--steps", "1", "--warmup", "0"],
    "data": ["--size", "tiny", "--history-rows", "200"],
    "loss": ["--batch", "8,12", "--steps", "1", "--warmup", "0", "--items", "50"],
    "codes": ["--n", "400", "--dim", "8", "--clusters", "16", "--levels", "2", "--codebook-size", "8",
              "--niter", "3", "--balanced-iters", "1", "--queries", "50"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_perf_runs_and_prints_json(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf", name, "--json", *TINY[name]]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out, dict) and out


@pytest.mark.slow
def test_perf_rank_world_prints_one_and_n_processes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf", "rank", "--json", *TINY["rank"], "--nproc-per-node", "2", "--sharding", "row_wise"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["nproc_per_node"] == 2 and out["sharding"] == "row_wise"
    assert set(out["samples_per_s"]) == {"dlrm", "din", "sim"}
    assert all(set(v) == {"1", "2"} and min(v.values()) > 0 for v in out["samples_per_s"].values())


@pytest.mark.slow
def test_perf_quantize_shows_the_gemm_ceiling_and_bare_search_side_by_side(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 21: encode items/s, its fraction of the measured GEMM ceiling and its ratio to the bare faiss
    searches, in the JSON and in the text table."""
    assert main(["perf", "quantize", "--json", *TINY["quantize"]]) == 0
    rq = json.loads(capsys.readouterr().out)["rq_kmeans"]
    assert rq["gemm_gflops"] > 0 and rq["encode_threads"] >= 1
    ceiling = rq["gemm_gflops"] * 1e9 / (2 * 2 * 8 * 64)  # L=2, K=8, d=64 (the default dim)
    assert rq["gemm_ceiling_items_per_s"] == pytest.approx(ceiling)
    assert rq["encode_fraction_of_gemm_ceiling"] == pytest.approx(rq["encode_items_per_s"] / ceiling)
    assert rq["encode_over_bare_search"] == pytest.approx(
        rq["bare_faiss_search_items_per_s"] / rq["encode_items_per_s"])
    assert rq["reference_agrees_on_sample"]
    assert main(["perf", "quantize", *TINY["quantize"]]) == 0
    table = capsys.readouterr().out
    for row in ("GEMM ceiling", "encode / GEMM ceiling", "bare faiss search, 2 levels", "encode / bare faiss"):
        assert row in table


@pytest.mark.slow
def test_perf_rank_shows_the_training_loop_with_and_without_the_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 24: the sharded rankers trained through TrainPipelineSparseDist beside the plain loop in one run, with
    the same figures (no timing asserted)."""
    assert main(["perf", "rank", "--json", *TINY["rank"], "--steps", "2", "--warmup", "1"]) == 0
    out = json.loads(capsys.readouterr().out)["pipeline"]
    assert out["tolerance"] == 1e-6 and out["held_out_rows"] == 64
    for model in ("dlrm", "din", "sim"):
        r = out[model]
        assert set(r["samples_per_s"]) == {"plain", "sparse_dist"} and min(r["samples_per_s"].values()) > 0
        assert r["final_loss"]["plain"] == r["final_loss"]["sparse_dist"] and r["auc"]["plain"] == r["auc"]["sparse_dist"]
        assert r["max_loss_diff"] == 0 and r["max_pred_diff"] == 0 and r["verdict"] == "equal to the bit"


def test_perf_loss_times_both_implementations_of_both_calls(capsys: pytest.CaptureFixture[str]) -> None:
    """Reference vs fused InfoNCE per call pattern and batch size, with their agreement; a second or so."""
    assert main(["perf", "loss", "--json", *TINY["loss"]]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["pattern"], r["batch"]) for r in rows] == [("align", 8), ("align", 12), ("u2i", 8), ("u2i", 12)]
    for r in rows:
        assert r["reference_ms"] > 0 and r["fused_ms"] > 0 and r["speedup"] > 0
        assert r["max_loss_diff"] < 1e-5 and r["max_grad_diff"] < 1e-5 * max(1.0, r["max_grad"])
    assert main(["perf", "loss", *TINY["loss"], "--patterns", "u2i"]) == 0
    table = capsys.readouterr().out
    assert "reference ms" in table and "fused ms" in table and "u2i" in table and "align" not in table.split("\n", 1)[1]
