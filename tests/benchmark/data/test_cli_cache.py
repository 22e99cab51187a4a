"""`qarm-bench data describe/export` in-process, the parquet cache, and the synthetic generator."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmark.cli import main
from benchmark.data import DataConfig, SyntheticConfig, prepare
from benchmark.data.synthetic import sizes


def test_describe_movielens_100k_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "describe", "movielens-100k", "--json", "--cache-dir", str(tmp_path)]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["users"], s["items"], s["impressions"]) == (943, 1682, 100000)
    assert s["train"] + s["val"] + s["test"] + s["cold_rows_dropped_from_train_val"] == 100000
    assert s["cold_items_drawn"] == round(0.1 * 1682)  # every ML-100K item has ratings
    # cold = no training impression: the drawn ones and any item whose only impressions fell in val/test
    assert s["cold_items"] >= s["cold_items_drawn"] and s["cold_items"] + s["warm_items"] == 1682
    for key in ("positives", "cold_user_share_test", "cold_user_share_val", "history_len_mean"):
        assert key in s
    assert s["cold_user_share_test"] == 0.0  # per-user temporal: every test user trains


def test_describe_text_global_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "describe", "movielens-100k", "--split", "global_temporal",
                 "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "cold-user share of test" in out and "943" in out


@pytest.mark.parametrize("fmt", ["parquet", "recbole"])
def test_export(tmp_path: Path, recbole_dir: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    cfg = DataConfig(root=str(recbole_dir), verify_sha256=False)
    # the CLI verifies sha256 by default; export the prepared object the same way the CLI does
    from benchmark.data.export import export
    data = prepare(cfg, cache_dir=tmp_path / "c")
    export(data, out, fmt)
    if fmt == "parquet":
        test = pl.read_parquet(out / "test.parquet")
        assert test.select("user_id", "item_id", "label").rows() == (
            data.test.join(data.users, on="user_idx").join(data.items, on="item_idx")
            .select("user_id", "item_id", "label").rows())
        assert pl.read_parquet(out / "items.parquet")["text"].to_list()[-1] == ""
    else:
        lines = (out / "movielens-100k.train.inter").read_text().splitlines()
        assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float\tlabel:float\trating:float"
        n = sum(len((out / f"movielens-100k.{s}.inter").read_text().splitlines()) - 1
                for s in ("train", "valid", "test"))
        assert n == data.train.height + data.val.height + data.test.height
        assert (out / "movielens-100k.item").read_text().splitlines()[1].startswith("10\tToy Story (1995)")


def test_cli_export_synthetic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "export", "synthetic", "--out", str(tmp_path / "o"), "--format", "recbole",
                 "--cache-dir", str(tmp_path / "c")]) == 0
    assert (tmp_path / "o" / "synthetic.valid.inter").exists()


def test_second_prepare_reads_cache(tmp_path: Path, recbole_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = DataConfig(root=str(recbole_dir), verify_sha256=False)
    cache = tmp_path / "cache"
    a = prepare(cfg, cache_dir=cache)
    prep_mod = sys.modules["benchmark.data.preparation"]  # the module (the package attribute is the function)

    def boom(*args, **kw):
        raise AssertionError("rebuilt instead of reading the cache")

    monkeypatch.setattr(prep_mod, "build_prepared", boom)
    b = prepare(cfg, cache_dir=cache)
    assert a.fingerprint == b.fingerprint and a.train.equals(b.train) and a.stats == b.stats
    entry = [f"movielens-100k-{a.fingerprint[:16]}"]
    assert [p.name for p in (cache / "data").iterdir()] == entry  # the stage cache's "data" stage
    monkeypatch.undo()
    c = prepare(cfg, cache_dir=cache, force=True)  # rebuilt in place, same content
    assert c.train.equals(a.train) and [p.name for p in (cache / "data").iterdir()] == entry
    # a changed raw file or config changes the fingerprint
    with (recbole_dir / "ml-100k.inter").open("a") as f:
        f.write("3\t10\t4\t400\n")
    assert prepare(cfg, cache_dir=cache).fingerprint != a.fingerprint
    assert prepare(DataConfig(root=str(recbole_dir), verify_sha256=False, history_len=3),
                   cache_dir=cache).fingerprint != a.fingerprint


def test_prepared_schema(tmp_path: Path) -> None:
    p = prepare(DataConfig(dataset="synthetic"), cache_dir=tmp_path)
    want = {"user_idx": pl.Int32, "item_idx": pl.Int32, "ts": pl.Int64, "label": pl.Int8,
            "hist_item_idx": pl.List(pl.Int32)}
    for df in (p.train, p.val, p.test):
        assert dict(df.schema) == want
        assert df.equals(df.sort(["user_idx", "ts", "item_idx"]))
    assert dict(p.items.schema) == {"item_idx": pl.Int32, "item_id": pl.Utf8, "text": pl.Utf8, "image_path": pl.Utf8,
                                    "category": pl.Utf8, "year": pl.Utf8, "genres": pl.List(pl.Utf8),
                                    "is_cold": pl.Boolean, "cold_drawn": pl.Boolean, "train_count": pl.Int32,
                                    "pop_bucket": pl.Int8}
    # synthetic items have no year or genres: the "unknown" values on every row
    assert set(p.items["year"].to_list()) == {""} and set(p.items["genres"].list.len().to_list()) == {0}
    assert p.items["item_idx"].to_list() == list(range(30)) and p.users["user_idx"].to_list() == list(range(40))
    assert p.train_positives().columns == ["user_idx", "item_idx", "ts"]
    assert p.train_positives().height == int(p.train["label"].sum())


def test_synthetic_clusters_are_planted(tmp_path: Path) -> None:
    sc = SyntheticConfig(size="small", n_users=300, n_interactions=6000)
    assert sizes(sc) == (300, 1000, 6000, 10)
    p = prepare(DataConfig(dataset="synthetic", synthetic=sc), cache_dir=tmp_path)
    cluster = p.items["category"].str.replace("cluster-", "").cast(pl.Int32).to_numpy()
    # text: an item's words come mostly from its cluster's theme
    from benchmark.data.synthetic import cluster_words
    first = p.items.filter(pl.col("category") == "cluster-0")["text"].str.split(" ").explode()
    assert first.is_in(list(cluster_words(0))).mean() > 0.6
    # behaviour: a user's positives concentrate on few clusters (2 preferred of 10)
    pos = p.train_positives().join(p.items.select("item_idx", pl.col("category").alias("c")), on="item_idx")
    top2 = pos.group_by("user_idx", "c").len().sort("len", descending=True).group_by("user_idx").agg(
        pl.col("len").head(2).sum() / pl.col("len").sum())
    assert top2["len"].mean() > 0.7  # uniform clusters would give ~0.2 + noise
    assert np.bincount(cluster).min() == 100  # balanced clusters


def test_synthetic_images(tmp_path: Path) -> None:
    sc = SyntheticConfig(images=True, image_size=16, n_items=6, n_users=5, n_interactions=30)
    p = prepare(DataConfig(dataset="synthetic", synthetic=sc), cache_dir=tmp_path)
    from PIL import Image

    paths = p.items["image_path"].to_list()
    assert all(Path(x).exists() for x in paths)
    a, b = (np.asarray(Image.open(x)) for x in paths[:2])
    assert a.shape == (16, 16, 3) and b.shape == (16, 16, 3)
