"""Sharded = plain, numerically, in one process: each ranker (DLRM, DIN, SIM) built once from a seed, trained
a few steps on the same batches as a plain torch model (torch.optim.Adagrad / RowWiseAdagrad over the tables,
benchmark.cells.train.make_optimizers) and as a DistributedModelParallel on a 1-rank gloo world (fbgemm's fused
optimiser in backward, recsys_models.sharding.shard_model), gives the same losses and predictions: they differ
by ~6e-8 (float32 summation order), and the test allows 1e-6. The comparison has teeth: the fused Adagrad's old
eps (fbgemm's default 1e-8, against torch's 1e-10) moves them by 4e-6 to 9e-6 within these 6 steps, a 1 % larger
table lr by 4e-4 to 1e-3; both fail it.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import polars as pl
import pytest
import torch
import torch.distributed as dist

from benchmark.cells.inputs import CellInputs, build_features
from benchmark.cells.pipeline import train_step
from benchmark.cells.train import make_optimizers, predict
from recsys_models import optimizers
from recsys_models.batching import batch_of, batch_rows, split_arrays
from recsys_models.config import DlrmConfig, SimConfig, TrainConfig
from recsys_models.factory import batch_layout, build_model
from recsys_models.sharding import shard_model
from recsys_models.train_wrapper import RankerTrain

N, U, STEPS, TOL = 40, 12, 6, 1e-6
CFG = TrainConfig(batch_size=32, embedding_dim=8, dlrm=DlrmConfig(dense_arch=(16,), over_arch=(16,)),
                  sim=SimConfig(top_k=4, recent=3, mlp=(16,)))


def _split(rng: np.random.Generator, n: int) -> pl.DataFrame:
    items = rng.integers(0, N, n)
    hist = [rng.integers(0, N, h).tolist() for h in rng.integers(0, 8, n)]
    label = ((items % 2 == 0) ^ (rng.random(n) < 0.1)).astype(np.int8)
    return pl.DataFrame(
        {"user_idx": rng.integers(0, U, n), "item_idx": items, "ts": np.arange(n), "label": label,
         "hist_item_idx": hist},
        schema_overrides={"user_idx": pl.Int32, "item_idx": pl.Int32, "ts": pl.Int64, "label": pl.Int8,
                          "hist_item_idx": pl.List(pl.Int32)},
    )


@pytest.fixture(scope="module")
def inputs() -> CellInputs:
    rng = np.random.default_rng(0)
    train, val = _split(rng, STEPS * CFG.batch_size), _split(rng, 50)
    items = pl.DataFrame({"item_idx": np.arange(N, dtype=np.int32), "is_cold": np.arange(N) % 5 == 0,
                          "pop_bucket": (np.arange(N) % 2).astype(np.int8)})
    users = pl.DataFrame({"user_idx": np.arange(U, dtype=np.int32), "gender": ["F", "M"] * (U // 2)})
    codes = np.stack([np.arange(N) % 4, np.arange(N) % 3], axis=1)
    fs = build_features("aligned_codes", n_items=N, n_users=U, embedding_dim=CFG.embedding_dim, users=users,
                        codes=codes, dense=rng.normal(size=(N, 4)).astype(np.float32))
    return CellInputs(train, val, val, items, fs, torch.from_numpy(codes))


@pytest.fixture(scope="module", autouse=True)
def one_rank_world():
    """The 1-rank gloo world the sharded models live in (shard_model makes it when none exists)."""
    created = not dist.is_initialized()
    yield
    if created and dist.is_initialized():
        dist.destroy_process_group()


Run = tuple[list[float], np.ndarray]  # (loss of each step, validation click probabilities (n,) after the steps)


def train_steps(model_name: str, inputs: CellInputs, cfg: TrainConfig, *, sharded: bool, sharding: str = "table_wise",
                emb_lr: float | None = None, plan: dict[str, str] | None = None) -> Run:
    """STEPS steps of the ranker built from seed 0, plain (make_optimizers) or sharded (shard_model, tables' lr
    `emb_lr` if given; its plan summary is put in `plan`)."""
    fs, layout = inputs.features, batch_layout(model_name)
    torch.manual_seed(0)
    model = RankerTrain(build_model(model_name, fs, cfg, search_codes=inputs.search_codes))
    if sharded:  # as the training loop shards: DMP(RankerTrain(ranker)), the loss inside
        local = RankerTrain(build_model(model_name, fs, cfg, search_codes=inputs.search_codes, meta=True))
        dmp, opt = shard_model(local, model.state_dict(), device=torch.device("cpu"), sharding=sharding,  # type: ignore[arg-type]
                               emb_optimizer=cfg.emb_optimizer, emb_lr=emb_lr or cfg.emb_lr, dense_lr=cfg.lr,
                               weight_decay=cfg.weight_decay, batch_size=cfg.batch_size)
        model, opts = dmp, [opt]
        (plan if plan is not None else {}).update(dmp.plan_summary)  # type: ignore[arg-type]
    else:
        opts = make_optimizers(model, cfg)
    arrays = {s: split_arrays(getattr(inputs, s), max_hist=cfg.max_hist, n_items=N, n_users=U) for s in ("train", "val")}
    losses = []
    model.train()
    for idx in itertools.islice(batch_rows(len(arrays["train"]), cfg.batch_size, torch.Generator().manual_seed(0)),
                                STEPS):
        batch = batch_of(fs, arrays["train"], idx, layout)
        if sharded:  # the sharded path's loss (recsys_models.sharding.global_mean_bce) on a world of one
            batch.loss_scale = 1 / len(idx)
        losses.append(float(train_step(model, opts, batch)[0]))
    return losses, predict(model, fs, arrays["val"], 64, layout)


def assert_same(plain: Run, sharded: Run) -> None:
    np.testing.assert_allclose(sharded[0], plain[0], rtol=0, atol=TOL)
    np.testing.assert_allclose(sharded[1], plain[1], rtol=0, atol=TOL)


def gap(plain: Run, sharded: Run) -> float:
    return float(max(np.abs(np.subtract(sharded[0], plain[0])).max(), np.abs(sharded[1] - plain[1]).max()))


@pytest.mark.parametrize("model", ["dlrm", "din", "sim"])
@pytest.mark.parametrize("emb_optimizer", ["adagrad", "rowwise_adagrad"])
def test_sharded_steps_equal_plain_steps(inputs: CellInputs, model: str, emb_optimizer: str) -> None:
    cfg = dataclasses.replace(CFG, emb_optimizer=emb_optimizer)
    plain = train_steps(model, inputs, cfg, sharded=False)
    assert plain[0][-1] < plain[0][0]  # it learns: the steps move the tables and the dense layers
    for sharding in ("table_wise", "row_wise"):
        plan: dict[str, str] = {}
        assert_same(plain, train_steps(model, inputs, cfg, sharded=True, sharding=sharding, plan=plan))
        assert plan and all(p == f"{sharding} ranks [0]" for p in plan.values())


@pytest.mark.parametrize("model", ["dlrm", "sim"])
def test_column_wise_steps_equal_plain_steps(inputs: CellInputs, model: str) -> None:
    plain = train_steps(model, inputs, CFG, sharded=False)
    plan: dict[str, str] = {}
    assert_same(plain, train_steps(model, inputs, CFG, sharded=True, sharding="column_wise", plan=plan))
    assert plan and all(p == "column_wise ranks [0, 0]" for p in plan.values())  # D = 8: two 4-wide shards


def test_the_comparison_fails_on_a_different_step(inputs: CellInputs, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = train_steps("dlrm", inputs, CFG, sharded=False)
    wrong_lr = train_steps("dlrm", inputs, CFG, sharded=True, emb_lr=CFG.emb_lr * 1.01)
    monkeypatch.setattr(optimizers, "ADAGRAD_EPS", 1e-8)  # the fused kernel's own default, before this fix
    old_eps = train_steps("dlrm", inputs, CFG, sharded=True)
    for other in (wrong_lr, old_eps):
        assert gap(plain, other) > 3 * TOL
        with pytest.raises(AssertionError):
            assert_same(plain, other)
