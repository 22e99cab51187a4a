"""`qarm-bench codes export`: a suite's code sets, read from its stage cache, written as parquet + provenance.

synthetic-tiny runs once (1 epoch, DLRM, the VQ variant so a VQ bag is fitted too); every test exports from its
cache through the command line and checks the files against the cache entries themselves.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmark.cli import main
from benchmark.config.suite import load_config
from benchmark.data.preparation import data_key
from benchmark.engine.plan import replicate_seeds
from benchmark.itemside.compute import parse_code_set
from benchmark.itemside.stages import item_side_keys, needed_code_sets

pytestmark = pytest.mark.slow

SUITE_SETS = ["rank.epochs=1", 'suite.models=["dlrm"]', 'suite.variants=["id_only","aligned_codes_vq"]',
              "suite.workers=1"]


def _sets() -> list[str]:
    return [a for s in SUITE_SETS for a in ("--set", s)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("export") / "runs"
    rc = main(["run", "synthetic-tiny", *_sets(), "--set", f"suite.runs_dir={runs}",
               "--set", f"suite.tracking_uri=sqlite:///{runs / 'mlflow.db'}"])
    assert rc == 0
    return runs


def _export(runs: Path, out: Path, *extra: str) -> int:
    return main(["codes", "export", "synthetic-tiny", "--out", str(out), "--runs-dir", str(runs), *_sets(),
                 *extra])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_code_set_of_every_replicate_equals_its_cache_entry(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "ids"
    assert _export(runs, out) == 0
    cfg = load_config("synthetic-tiny", [*SUITE_SETS, f"suite.runs_dir={runs}"])
    artifacts = runs / "synthetic-tiny" / "artifacts"
    dkey = data_key(cfg.data)
    items = pl.read_parquet(artifacts / "data" / dkey / "items.parquet")
    names = needed_code_sets(cfg)
    assert "aligned_vq" in names and replicate_seeds(cfg) == [0, 1]
    written = set()
    for seed in replicate_seeds(cfg):
        keys = item_side_keys(cfg, dkey, seed)
        for name in names:
            entry = artifacts / "codes" / keys.key("codes", name)
            codes = np.load(entry / "codes.npy")
            frame = pl.read_parquet(out / str(seed) / f"{name}.parquet")
            prov = json.loads((out / str(seed) / f"{name}.json").read_text())
            written |= {f"{seed}/{name}.parquet", f"{seed}/{name}.json"}
            # item_idx -> the cache's row, item_id and is_cold -> the data's items frame
            idx = frame["item_idx"].to_numpy()
            joined = frame.select("item_idx", "item_id", "is_cold").join(
                items.select("item_idx", "item_id", "is_cold"), on="item_idx", suffix="_data")
            assert joined.height == frame.height == items.height == codes.shape[0]
            assert (joined["item_id"] == joined["item_id_data"]).all()
            assert (joined["is_cold"] == joined["is_cold_data"]).all()
            source, quantizer = parse_code_set(name)
            cols = [c for c in frame.columns if c.startswith(("code_", "neighbour_"))]
            assert prov["levels"] == len(cols) == codes.shape[1]
            assert (prov["code_set"], prov["source"], prov["quantizer"]) == (name, source, quantizer)
            assert prov["replicate_seed"] == seed and prov["stage_key"] == keys.key("codes", name)
            assert prov["columns"] == cols and len(prov["vocab_sizes"]) == (1 if quantizer == "vq" else len(cols))
            assert prov["fit_population"]["n_items"] == items.height
            assert prov["fit_population"]["n_cold"] == int(items["is_cold"].sum())
            if quantizer == "vq":  # neighbours as source ids: the item_id of the cached item_idx
                assert prov["kind"] == "vq" and prov["fit_population"]["neighbour_candidates"] == "warm"
                ids = items.sort("item_idx")["item_id"].to_numpy()
                for j, c in enumerate(cols):
                    assert c == f"neighbour_{j}"
                    assert (frame[c].to_numpy() == ids[codes[idx, j]]).all()
            else:
                assert prov["kind"] == "rq" and prov["fit_population"]["fitted_on"] == "warm"  # quantize.fit_on
                assert cols == [f"code_{j}" for j in range(codes.shape[1])]
                assert frame.select(cols).dtypes == [pl.Int64] * len(cols)
                np.testing.assert_array_equal(frame.select(cols).to_numpy(), codes[idx])
                assert prov["tokens"]["scheme"] == cfg.quantize.tokens.scheme
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == written
    for rel, meta in manifest["files"].items():
        assert meta["sha256"] == _sha256(out / rel)
    assert manifest["seeds"] == [0, 1] and sorted(manifest["code_sets"]) == sorted(names)


def test_code_set_restricts_and_a_bad_name_lists_the_names(runs: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert _export(runs, tmp_path / "one", "--code-set", "aligned_rq_kmeans") == 0
    assert sorted(p.relative_to(tmp_path / "one").as_posix() for p in (tmp_path / "one").rglob("*.*")) == [
        "0/aligned_rq_kmeans.json", "0/aligned_rq_kmeans.parquet", "1/aligned_rq_kmeans.json",
        "1/aligned_rq_kmeans.parquet", "manifest.json"]
    capsys.readouterr()
    assert _export(runs, tmp_path / "bad", "--code-set", "aligned_nope") == 2
    err = capsys.readouterr().err
    assert "aligned_nope" in err and "Traceback" not in err
    assert all(n in err for n in ("aligned_rq_kmeans", "frozen_rq_vae", "aligned_vq", "aligned_rq_kmeans.fsq"))
    assert not (tmp_path / "bad").exists()


def test_a_missing_entry_is_a_one_line_error_naming_the_run_command(runs: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "runs"
    shutil.copytree(runs / "synthetic-tiny" / "artifacts", copy / "synthetic-tiny" / "artifacts")
    cfg = load_config("synthetic-tiny", [*SUITE_SETS, f"suite.runs_dir={copy}"])
    key = item_side_keys(cfg, data_key(cfg.data), 1).key("codes", "frozen_rq_vae")
    shutil.rmtree(copy / "synthetic-tiny" / "artifacts" / "codes" / key)
    assert _export(copy, tmp_path / "ids") == 2
    err = capsys.readouterr().err
    assert "synthetic-tiny" in err and "frozen_rq_vae" in err and "seed 1" in err
    assert "qarm-bench run synthetic-tiny" in err and "Traceback" not in err
    assert not (tmp_path / "ids").exists()  # nothing half-written


def test_overwriting_needs_force(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ids"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert _export(runs, out, "--code-set", "aligned_vq") == 2
    err = capsys.readouterr().err
    assert "--force" in err and "Traceback" not in err
    assert (out / "mine.txt").read_text() == "keep me"
    assert _export(runs, out, "--code-set", "aligned_vq", "--force") == 0
    assert not (out / "mine.txt").exists() and (out / "1" / "aligned_vq.parquet").exists()
