"""The sharding planner's inputs and the tables' optimiser settings, without a process group:
column-wise really cuts columns, the planner sees the real per-rank batch, settings that cannot be honoured fail
with the config key, and the row-wise Adagrad reference takes the step its formula says."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torchrec.distributed.types import ShardingType

from recsys_models.config import DlrmConfig, TrainConfig, column_shard_width
from recsys_models.dlrm import build_dlrm
from recsys_models.errors import RankConfigError, RecsysModelError
from recsys_models.features import FeatureSpec, ItemField
from recsys_models.optimizers import ADAGRAD_EPS, table_optimizer
from recsys_models.sharding import make_planner, shard_model, sharders, table_configs


def _dlrm(d: int) -> torch.nn.Module:
    spec = FeatureSpec(n_items=20, n_users=6, embedding_dim=d, item_fields=(ItemField("item", "t_item", 20),))
    return build_dlrm(spec, DlrmConfig(dense_arch=(8,), over_arch=(8,)), device=torch.device("meta"))


@pytest.mark.parametrize(("dim", "world", "width"), [(16, 1, 8), (16, 2, 8), (16, 4, 4), (16, 3, 8), (12, 2, 4), (12, 1, 4), (24, 2, 12),
                                                     (8, 2, 4), (8, 8, 4), (64, 2, 32), (4, 2, None), (6, 2, None),
                                                     (10, 2, None)])
def test_column_shard_width(dim: int, world: int, width: int | None) -> None:
    assert column_shard_width(dim, world) == width
    if width is not None:  # a multiple of 4 dividing D into at least 2 shards
        assert width % 4 == 0 and dim % width == 0 and dim // width >= 2


def test_column_wise_plan_cuts_every_table_into_column_shards() -> None:
    model = _dlrm(16)  # D = 16: TorchRec's default minimum shard width (128) would keep each table whole
    plan = make_planner(model, "column_wise", torch.device("cpu"), world=2).plan(model, sharders())
    tables = {t: ps for module_plan in plan.plan.values() for t, ps in module_plan.items()}  # type: ignore[attr-defined]
    assert set(tables) == {c.name for c in table_configs(model)}
    for ps in tables.values():
        assert ps.sharding_type == ShardingType.COLUMN_WISE.value
        shards = ps.sharding_spec.shards
        assert [s.shard_sizes[1] for s in shards] == [8, 8]
        assert sorted(s.shard_offsets[1] for s in shards) == [0, 8]


def test_planner_gets_each_rank_s_part_of_the_real_batch() -> None:
    model = _dlrm(16)
    assert make_planner(model, "table_wise", torch.device("cpu"), world=2, batch_size=1000)._batch_size == 500
    assert make_planner(model, "table_wise", torch.device("cpu"), world=3, batch_size=1000)._batch_size == 334


def test_settings_that_cannot_be_honoured_fail_naming_the_keys() -> None:
    with pytest.raises(RankConfigError, match=r"TrainConfig\.sharding: 'column_wise' .* rank\.embedding_dim a multiple "
                                              r"of 4 and at least 8; got rank\.embedding_dim = 6"):
        TrainConfig(sharding="column_wise", embedding_dim=6)
    with pytest.raises(RankConfigError, match=r"TrainConfig\.sharding: 'column_wise' with rank\.emb_optimizer = "
                                              r"'rowwise_adagrad'"):
        TrainConfig(sharding="column_wise", emb_optimizer="rowwise_adagrad")
    assert TrainConfig(sharding="column_wise", embedding_dim=12).sharding == "column_wise"
    with pytest.raises(RecsysModelError, match=r"rank\.sharding: 'column_wise' .* got rank\.embedding_dim = 4"):
        shard_model(_dlrm(4), {}, device=torch.device("cpu"), sharding="column_wise")
    with pytest.raises(RecsysModelError, match=r"rank\.emb_optimizer: expected one of adagrad, rowwise_adagrad, adam"):
        table_optimizer("sgd", 0.1)  # type: ignore[arg-type]
    assert dataclasses.replace(TrainConfig(), emb_optimizer="rowwise_adagrad").emb_optimizer == "rowwise_adagrad"


def test_rowwise_adagrad_reference_takes_the_formula_s_step() -> None:
    # one accumulator per row: G_r = mean_j g_rj^2 (from 0), w_r -= lr g_r / (sqrt(G_r) + eps)
    w0 = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    g = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, -1.0]])
    w = torch.nn.Parameter(w0.clone())
    opt = table_optimizer("rowwise_adagrad", lr=0.5).build([w])
    w.grad = g.clone()
    opt.step()
    acc = torch.tensor([[12.5], [0.0], [1.0]])  # (9 + 16) / 2, 0, (1 + 1) / 2
    torch.testing.assert_close(w.detach(), w0 - 0.5 * g / (acc.sqrt() + ADAGRAD_EPS))
    assert torch.equal(w.detach()[1], w0[1])  # a row without gradient does not move
    exact = table_optimizer("adagrad", lr=0.5)  # per element, torch's eps (the sharded path fuses the same)
    assert exact.cls is torch.optim.Adagrad and exact.kwargs == {"lr": 0.5, "eps": 1e-10}


def test_the_planner_raises_no_third_party_warning() -> None:
    """Issue 23 point 6: torchrec's HeuristicalStorageReservation FutureWarning is filtered where the planner is
    made (and only there)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_planner(_dlrm(16), "table_wise", torch.device("cpu"), world=2)
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]


@pytest.mark.parametrize("name", ["adagrad", "adam"])
def test_plain_table_optimizer_is_torchs_fused_kernel_and_takes_the_for_each_step(name: str) -> None:
    """build() uses torch's fused kernel; over a few steps it moves the tables as the for-each loop does."""
    from recsys_models.optimizers import table_optimizer

    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(50, 8)), torch.nn.Parameter(torch.randn(50, 8))
    b.data.copy_(a.data)
    start = a.data.clone()
    opt = table_optimizer(name, 0.05)
    fused, plain = opt.build([a]), opt.cls([b], **opt.kwargs, foreach=False)
    assert fused.defaults["fused"] and "fused" not in opt.kwargs  # kwargs stay valid fbgemm fused params
    for step in range(4):
        g = torch.randn(50, 8) * (step + 1)
        g[::3] = 0  # rows without a gradient this step, as untouched table rows
        a.grad, b.grad = g.clone(), g.clone()
        fused.step()
        plain.step()
    torch.testing.assert_close(a.data, b.data, rtol=1e-6, atol=1e-7)
    assert (a.data - start).abs().max() > 0.01  # the steps moved the tables
