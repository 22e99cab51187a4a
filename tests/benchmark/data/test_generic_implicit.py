"""Your own implicit log end to end (docs/data.md "Your own log, end to end"): (user, item, time) rows only, an
optional item file, sampled negatives; prepared, keyed and run through the suite."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from benchmark.config.data import NegativesConfig
from benchmark.data import DataConfig, GenericConfig, SplitConfig, prepare
from benchmark.data.preparation import data_key

LOG = "user,item,time\n" + "".join(f"u{u},v{(u * 3 + k) % 12},{100 * k + u}\n" for u in range(8) for k in range(6))
MAPPING = GenericConfig(interactions="log.csv", items="", user_col="user", item_col="item", ts_col="time")


def cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(dataset="generic", root=str(root), generic=MAPPING, history_len=3,
                      split=SplitConfig(cold_item_frac=0.2, val_frac=0.2, test_frac=0.2), **kw)


def test_implicit_log_without_item_file(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text(LOG)
    plain = prepare(cfg(tmp_path), cache_dir=tmp_path / "c")
    assert set(plain.items["item_id"].to_list()) == {f"v{i}" for i in range(12)}
    assert set(plain.items["text"].to_list()) == {""}
    for df in (plain.train, plain.val, plain.test):
        assert set(df["label"].to_list()) == {1}  # no rating, no label column: every row is a click
    neg = NegativesConfig(kind="uniform", ratio=2, seed=3)
    p = prepare(cfg(tmp_path, negatives=neg), cache_dir=tmp_path / "c")
    assert data_key(cfg(tmp_path, negatives=neg)) != data_key(cfg(tmp_path))
    for name in ("train", "val", "test"):
        df = getattr(p, name)
        assert df.filter(pl.col("label") == 0).height == 2 * getattr(plain, name).height
    assert p.stats["negatives"]["seed"] == 3 and p.stats["negatives"]["train_short"] == 0
    again = prepare(cfg(tmp_path, negatives=neg), cache_dir=tmp_path / "c")  # read back from the cache entry
    assert again.train.equals(p.train) and again.stats == p.stats


def test_item_file_with_text_and_image_paths(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text(LOG)
    (tmp_path / "items.csv").write_text("item_id,title,img\n" + "".join(f"v{i},video {i},/img/{i}.jpg\n"
                                                                       for i in range(12)))
    g = GenericConfig(interactions="log.csv", items="items.csv", user_col="user", item_col="item", ts_col="time",
                      text_cols=("title",), image_col="img")
    p = prepare(DataConfig(dataset="generic", root=str(tmp_path), generic=g,
                           negatives=NegativesConfig(kind="popularity", ratio=1)), cache_dir=tmp_path / "c")
    assert p.items.filter(pl.col("item_id") == "v3").select("text", "image_path").row(0) == ("video 3", "/img/3.jpg")


@pytest.mark.slow
def test_implicit_log_runs_through_the_suite(tmp_path: Path) -> None:
    """A click log written from the synthetic generator's positives, with item text, sampled negatives: every
    stage runs, the cold slice has both labels and so an AUC."""
    from benchmark.config.data import SyntheticConfig
    from benchmark.config.suite import load_config
    from benchmark.data import synthetic
    from benchmark.engine.suite import SuiteRun

    raw = synthetic.generate(SyntheticConfig(n_users=120, n_items=90, n_interactions=3000, n_clusters=4))
    raw.interactions.filter(pl.col("label") == 1).select(user="user_id", item="item_id", time="ts").write_csv(
        tmp_path / "log.csv")
    raw.items.select("item_id", "text").write_csv(tmp_path / "items.csv")
    cfg = load_config("synthetic-tiny", [
        f"suite.runs_dir={tmp_path / 'runs'}", f"suite.tracking_uri=sqlite:///{tmp_path / 'runs' / 'mlflow.db'}",
        "suite.seeds=[0]", 'suite.models=["dlrm"]', 'suite.variants=["id_only","aligned_codes"]',
        "data.dataset=generic", f"data.root={tmp_path}", "data.generic.interactions=log.csv",
        "data.generic.user_col=user", "data.generic.item_col=item", "data.generic.ts_col=time",
        "data.negatives.kind=popularity", "data.negatives.ratio=2"])
    results = SuiteRun(cfg, progress=False).run()
    assert len(results.cells) == 2
    for cell in results.cells:
        assert 0.0 <= cell.test["cold"]["auc"] <= 1.0, cell.test
