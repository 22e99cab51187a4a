"""train_cell on tiny synthetic splits: determinism, result contents, early stopping, config errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from benchmark.errors import ConfigError
from benchmark.train import CellData, DlrmConfig, SimConfig, TrainConfig, train_cell

N, U = 30, 12


def _split(rng: np.random.Generator, n: int) -> pl.DataFrame:
    items = rng.integers(0, N, n)
    hist = [rng.integers(0, N, h).tolist() for h in rng.integers(0, 8, n)]
    label = ((items % 2 == 0) ^ (rng.random(n) < 0.1)).astype(np.int8)  # learnable from the item
    return pl.DataFrame(
        {"user_idx": rng.integers(0, U, n), "item_idx": items, "ts": np.arange(n), "label": label,
         "hist_item_idx": hist},
        schema_overrides={"user_idx": pl.Int32, "item_idx": pl.Int32, "ts": pl.Int64, "label": pl.Int8,
                          "hist_item_idx": pl.List(pl.Int32)},
    )


@pytest.fixture(scope="module")
def data() -> CellData:
    rng = np.random.default_rng(0)
    items = pl.DataFrame({"item_idx": np.arange(N, dtype=np.int32), "is_cold": np.arange(N) % 5 == 0,
                          "pop_bucket": (np.arange(N) % 2).astype(np.int8)})
    users = pl.DataFrame({"user_idx": np.arange(U, dtype=np.int32), "gender": ["F", "M"] * (U // 2)})
    codes = np.stack([np.arange(N) % 2, np.arange(N) % 3], axis=1)
    return CellData(train=_split(rng, 400), val=_split(rng, 120), test=_split(rng, 120), items=items, users=users,
                    codes=codes, dense=rng.normal(size=(N, 4)).astype(np.float32))


CFG = TrainConfig(epochs=3, batch_size=64, embedding_dim=8, dlrm=DlrmConfig(dense_arch=(16,), over_arch=(16,)),
                  sim=SimConfig(top_k=4, recent=3, mlp=(16,)))


@pytest.mark.parametrize(("model", "variant"), [("dlrm", "aligned_codes"), ("sim", "aligned_codes"),
                                                 ("din", "frozen_dense")])
def test_same_seed_identical_metrics(data: CellData, model: str, variant: str) -> None:
    a = train_cell(model, variant, data, CFG, seed=3)
    b = train_cell(model, variant, data, CFG, seed=3)
    assert [r.train_loss for r in a.history] == [r.train_loss for r in b.history]
    assert a.test == b.test and a.best_epoch == b.best_epoch
    assert a.test_predictions.equals(b.test_predictions)


def test_result_contents_and_callback(data: CellData) -> None:
    seen: list[tuple[int, dict[str, float]]] = []
    r = train_cell("dlrm", "codes_only", data, CFG, seed=0, on_epoch=lambda e, m: seen.append((e, m)))
    assert [e for e, _ in seen] == [rec.epoch for rec in r.history]
    assert set(seen[0][1]) == {"train_loss", "val_auc", "val_gauc", "val_logloss", "epoch_seconds"}
    assert 1 <= r.best_epoch <= len(r.history)
    assert r.val_best["auc"] == max(rec.val["auc"] for rec in r.history)
    assert set(r.test) == {"all", "cold", "warm", "pop_bucket_0", "pop_bucket_1"}
    assert r.test_predictions.columns == ["user_idx", "item_idx", "label", "pred"]
    assert r.test_predictions.height == data.test.height
    assert r.test["all"]["auc"] > 0.7  # the label is the item's parity (10% noise); codes carry it


def test_sim_reports_its_search(data: CellData) -> None:
    assert train_cell("sim", "id_only", data, dataclasses.replace(CFG, epochs=1), seed=0).sim_search == "soft"


def test_early_stopping_stops(data: CellData) -> None:
    # lr 0 for everything: validation AUC never improves after epoch 1, so patience 1 stops at epoch 2.
    cfg = dataclasses.replace(CFG, epochs=6, lr=0.0, emb_lr=0.0, patience=1)
    r = train_cell("dlrm", "id_only", data, cfg, seed=0)
    assert r.best_epoch == 1 and len(r.history) == 2


def test_config_errors(data: CellData) -> None:
    with pytest.raises(ConfigError, match="rank.model"):
        train_cell("xgboost", "id_only", data, CFG, seed=0)
    with pytest.raises(ConfigError, match="rank.batch_size"):
        train_cell("dlrm", "id_only", data, dataclasses.replace(CFG, batch_size=0), seed=0)
    with pytest.raises(ConfigError, match="rank.sharded"):
        train_cell("din", "id_only", data, dataclasses.replace(CFG, sharded=True), seed=0)


def test_train_config_defaults_are_complete() -> None:
    cfg = TrainConfig()
    assert all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(cfg))
    assert cfg.sim.search == "hard" and cfg.sim.prefix_depth == 1 and cfg.sim.top_k == 50
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3  # type: ignore[misc]


def test_sharded_dlrm_trains(data: CellData) -> None:
    import torch.distributed as dist

    created = not dist.is_initialized()
    try:
        r = train_cell("dlrm", "aligned_codes", data, dataclasses.replace(CFG, sharded=True, epochs=2), seed=0)
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()
    assert len(r.history) == 2 and r.test["all"]["n"] == data.test.height
    assert r.history[-1].train_loss < r.history[0].train_loss or r.best_epoch == 1
