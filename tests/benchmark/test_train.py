"""train_cell on tiny synthetic splits: determinism, result contents, early stopping, config errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
import torch

from benchmark.cells.inputs import CellInputs, build_features
from benchmark.cells.train import train_cell
from benchmark.core.errors import ConfigError
from recsys_models.config import DlrmConfig, SimConfig, TrainConfig
from recsys_models.errors import RankConfigError, RecsysModelError

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


class Data:
    """Tiny splits, items and users, and the item-side arrays every variant may read."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.train, self.val, self.test = _split(rng, 400), _split(rng, 120), _split(rng, 120)
        self.items = pl.DataFrame({"item_idx": np.arange(N, dtype=np.int32), "is_cold": np.arange(N) % 5 == 0,
                                   "pop_bucket": (np.arange(N) % 2).astype(np.int8)})
        self.users = pl.DataFrame({"user_idx": np.arange(U, dtype=np.int32), "gender": ["F", "M"] * (U // 2)})
        self.codes = np.stack([np.arange(N) % 2, np.arange(N) % 3], axis=1)
        self.dense = rng.normal(size=(N, 4)).astype(np.float32)

    def inputs(self, variant: str, search: bool = False) -> CellInputs:
        fs = build_features(variant, n_items=N, n_users=U, embedding_dim=CFG.embedding_dim, users=self.users,
                            codes=self.codes, vq_codes=None, dense=self.dense)
        codes = torch.from_numpy(self.codes) if search else None
        return CellInputs(self.train, self.val, self.test, self.items, fs, codes)


@pytest.fixture(scope="module")
def data() -> Data:
    return Data()


CFG = TrainConfig(epochs=3, batch_size=64, embedding_dim=8, dlrm=DlrmConfig(dense_arch=(16,), over_arch=(16,)),
                  sim=SimConfig(top_k=4, recent=3, mlp=(16,)))


@pytest.mark.parametrize(("model", "variant"), [("dlrm", "aligned_codes"), ("sim", "aligned_codes"),
                                                 ("din", "frozen_dense")])
def test_same_seed_identical_metrics(data: Data, model: str, variant: str) -> None:
    a = train_cell(model, data.inputs(variant, search=True), CFG, seed=3)
    b = train_cell(model, data.inputs(variant, search=True), CFG, seed=3)
    assert [r.train_loss for r in a.history] == [r.train_loss for r in b.history]
    assert a.test == b.test and a.best_epoch == b.best_epoch
    assert a.test_predictions.equals(b.test_predictions)


def test_result_contents_and_callback(data: Data) -> None:
    seen: list[tuple[int, dict[str, float]]] = []
    r = train_cell("dlrm", data.inputs("codes_only"), CFG, seed=0, on_epoch=lambda e, m: seen.append((e, m)))
    assert [e for e, _ in seen] == [rec.epoch for rec in r.history]
    assert set(seen[0][1]) == {"train_loss", "val_auc", "val_gauc", "val_logloss", "val_n", "val_n_pos", "epoch_seconds"}
    assert 1 <= r.best_epoch <= len(r.history)
    assert r.val_best["auc"] == max(rec.val["auc"] for rec in r.history)
    assert set(r.test) == {"all", "cold", "warm", "pop_bucket_0", "pop_bucket_1"}
    assert r.test_predictions.columns == ["user_idx", "item_idx", "label", "pred"]
    assert r.test_predictions.height == data.test.height
    assert r.test["all"]["auc"] > 0.7  # the label is the item's parity (10% noise); codes carry it
    # the validation rows of items without a train row (here every 5th item), scored at the best epoch
    cold_val = data.val.filter(pl.col("item_idx") % 5 == 0)
    assert r.val_slices["cold"]["n"] == cold_val.height and r.val_slices["cold"]["n_pos"] == cold_val["label"].sum()
    assert 0.0 <= r.val_slices["cold"]["auc"] <= 1.0 and r.val_slices["cold"]["auc"] != r.val_best["auc"]


def test_no_validation_cold_rows_no_validation_cold_slice(data: Data) -> None:
    inputs = dataclasses.replace(data.inputs("id_only"), items=data.items.with_columns(is_cold=pl.lit(False)))
    assert train_cell("dlrm", inputs, dataclasses.replace(CFG, epochs=1), seed=0).val_slices == {}


def test_sim_hard_search_needs_the_codes_it_matches_on(data: Data) -> None:
    with pytest.raises(RecsysModelError, match="search='hard' needs search_codes"):
        train_cell("sim", data.inputs("id_only"), dataclasses.replace(CFG, epochs=1), seed=0)
    soft = dataclasses.replace(CFG, epochs=1, sim=dataclasses.replace(CFG.sim, search="soft"))
    assert len(train_cell("sim", data.inputs("id_only"), soft, seed=0).history) == 1


def test_early_stopping_stops(data: Data) -> None:
    # lr 0 for everything: validation AUC never improves after epoch 1, so patience 1 stops at epoch 2.
    # (lr must be > 0 in a config file; dataclasses.replace skips that check on purpose here.)
    cfg = dataclasses.replace(CFG, epochs=6, lr=1e-30, emb_lr=1e-30, patience=1)
    r = train_cell("dlrm", data.inputs("id_only"), cfg, seed=0)
    assert r.best_epoch == 1 and len(r.history) == 2


def test_config_errors(data: Data) -> None:
    with pytest.raises(ConfigError, match=r"suite\.models: unknown ranker 'xgboost' \(registered: din, dlrm, sim"):
        train_cell("xgboost", data.inputs("id_only"), CFG, seed=0)
    with pytest.raises(RankConfigError, match="TrainConfig.batch_size: expected an integer >= 1, got 0"):
        dataclasses.replace(CFG, batch_size=0)
    with pytest.raises(RecsysModelError, match="rank.emb_optimizer: 'adam' has no fused CPU kernel"):
        train_cell("din", data.inputs("id_only"), dataclasses.replace(CFG, sharded=True, emb_optimizer="adam"), seed=0)


def test_train_config_defaults_are_complete() -> None:
    cfg = TrainConfig()
    assert all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(cfg))
    assert cfg.sim.search == "hard" and cfg.sim.prefix_depth == 1 and cfg.sim.top_k == 50
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize("model", ["dlrm", "sim"])
def test_sharded_ranker_trains(data: Data, model: str) -> None:
    import torch.distributed as dist

    created = not dist.is_initialized()
    cfg = dataclasses.replace(CFG, sharded=True, epochs=2)
    try:
        r = train_cell(model, data.inputs("aligned_codes", search=True), cfg, seed=0)
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()
    assert len(r.history) == 2 and r.test["all"]["n"] == data.test.height
    assert r.history[-1].train_loss < r.history[0].train_loss or r.best_epoch == 1
    plain = train_cell(model, data.inputs("aligned_codes", search=True), dataclasses.replace(cfg, sharded=False), 0)
    # counted on the feature spec and the dense layers, whatever the sharding
    assert (r.n_embedding_parameters, r.n_dense_parameters) == (plain.n_embedding_parameters, plain.n_dense_parameters)
    assert r.sharding_plan and not plain.sharding_plan
