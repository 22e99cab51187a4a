"""TorchRec's TrainPipelineSparseDist computes what the plain loop computes, on CPU, in one process.

Each ranker (DLRM, DIN, SIM) is built once from a seed with its loss inside (recsys_models.train_wrapper.RankerTrain),
sharded in DistributedModelParallel on a 1-rank gloo world as the training loop shards it, and run on the same
batches (an uneven last one included) twice: through `TrainPipelineSparseDist` (benchmark.cells.pipeline) and
batch after batch. Two training epochs with an evaluation after each, the evaluation in eval mode through the same
pipeline. Per-step losses and logits, the validation predictions and every weight after training (tables and
dense layers) must be EQUAL (tolerance 0: on CPU the pipeline runs the same operations in the same order; it only
starts the next batch's input distribution, which reads no weights, before this batch's backward). A comparison
with teeth: the same batches in another order fail it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
import torch
import torch.distributed as dist
from torch.distributed._shard.sharded_tensor import ShardedTensor
from torchrec.distributed.train_pipeline.runtime_forwards import PipelinedForward
from torchrec.distributed.types import ShardedModule

from benchmark.cells.inputs import CellInputs, build_features
from benchmark.cells.pipeline import make_pipeline, pipeline_kind, run_batches
from benchmark.cells.plan import rank_key_slice
from benchmark.cells.train import predict, train_cell
from benchmark.core.world import World
from recsys_models.batching import batch_rows, rank_batch, split_arrays
from recsys_models.config import DlrmConfig, SimConfig, TrainConfig
from recsys_models.errors import RankConfigError
from recsys_models.factory import batch_layout, build_model
from recsys_models.sharding import shard_model
from recsys_models.train_wrapper import RankerTrain

N, U = 40, 12
CFG = TrainConfig(batch_size=32, eval_batch_size=48, embedding_dim=8, sharded=True,
                  dlrm=DlrmConfig(dense_arch=(16,), over_arch=(16,)), sim=SimConfig(top_k=4, recent=3, mlp=(16,)))
CPU = torch.device("cpu")
TABLE_COLLECTIONS = {"dlrm": 1, "din": 2, "sim": 2}  # DLRM: one EBC; DIN, SIM: the items' and the context's


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
    train, val, test = _split(rng, 5 * CFG.batch_size + 13), _split(rng, 100), _split(rng, 90)  # uneven last batches
    items = pl.DataFrame({"item_idx": np.arange(N, dtype=np.int32), "is_cold": np.arange(N) % 5 == 0,
                          "pop_bucket": (np.arange(N) % 2).astype(np.int8)})
    users = pl.DataFrame({"user_idx": np.arange(U, dtype=np.int32), "gender": ["F", "M"] * (U // 2)})
    codes = np.stack([np.arange(N) % 4, np.arange(N) % 3], axis=1)
    fs = build_features("aligned_codes", n_items=N, n_users=U, embedding_dim=CFG.embedding_dim, users=users,
                        codes=codes, dense=rng.normal(size=(N, 4)).astype(np.float32))
    return CellInputs(train, val, test, items, fs, torch.from_numpy(codes))


@pytest.fixture(scope="module", autouse=True)
def one_rank_world():
    """The 1-rank gloo world the sharded models live in (shard_model makes it when none exists)."""
    created = not dist.is_initialized()
    yield
    if created and dist.is_initialized():
        dist.destroy_process_group()


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight of a (sharded) model, a world-of-one table's one local shard for a ShardedTensor."""
    out = {}
    for name, value in model.state_dict().items():
        if isinstance(value, ShardedTensor):
            value = torch.cat([s.tensor for s in value.local_shards()], dim=1)
        out[name] = value.detach().clone()
    return out


def run(model_name: str, inputs: CellInputs, *, pipelined: bool, reverse_last: bool = False) -> dict:
    """Two epochs of the sharded ranker from seed 0 (each: every training batch, then the validation split
    scored) through TrainPipelineSparseDist or the plain loop. reverse_last: the second epoch's last two
    batches swapped (the comparison's teeth)."""
    fs, layout = inputs.features, batch_layout(model_name)
    torch.manual_seed(0)
    model = RankerTrain(build_model(model_name, fs, CFG, search_codes=inputs.search_codes))
    local = RankerTrain(build_model(model_name, fs, CFG, search_codes=inputs.search_codes, meta=True))
    dmp, opt = shard_model(local, model.state_dict(), device=CPU, sharding="table_wise", batch_size=CFG.batch_size)
    pipeline = make_pipeline("sparse_dist" if pipelined else "none", dmp, [opt], CPU)
    assert (pipeline is not None) == pipelined
    arrays = {s: split_arrays(getattr(inputs, s), max_hist=CFG.max_hist, n_items=N, n_users=U)
              for s in ("train", "val")}
    generator = torch.Generator().manual_seed(0)
    losses, logits, val = [], [], []
    for epoch in range(2):
        batches = [rank_batch(fs, arrays["train"], idx, layout, 0, 1)[0]
                   for idx in batch_rows(len(arrays["train"]), CFG.batch_size, generator)]
        assert len(batches[-1].labels) == 13
        if reverse_last and epoch == 1:
            batches[-2:] = batches[-1:-3:-1]
        dmp.train()
        for loss, out, _ in run_batches(dmp, batches, [opt], pipeline):
            losses.append(float(loss))
            logits.append(out.numpy().copy())
        val.append(predict(dmp, fs, arrays["val"], CFG.eval_batch_size, layout, CPU, World(), pipeline))
    pipelined_modules = [m for m in dmp.modules() if isinstance(m, ShardedModule)
                         and isinstance(m.forward, PipelinedForward)]
    return {"losses": losses, "logits": logits, "val": val, "state": _state(dmp), "pipelined": len(pipelined_modules)}


def assert_same(plain: dict, piped: dict) -> None:
    """Equal to the bit (tolerance 0)."""
    assert piped["losses"] == plain["losses"]
    assert len(piped["logits"]) == len(plain["logits"])
    for a, b in zip(piped["logits"], plain["logits"]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(piped["val"], plain["val"]):
        np.testing.assert_array_equal(a, b)
    assert piped["state"].keys() == plain["state"].keys()
    for name, value in plain["state"].items():
        torch.testing.assert_close(piped["state"][name], value, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("model", ["dlrm", "din", "sim"])
def test_sparse_dist_pipeline_equals_the_plain_loop(inputs: CellInputs, model: str) -> None:
    plain = run(model, inputs, pipelined=False)
    piped = run(model, inputs, pipelined=True)
    # TorchRec pipelined every sharded table collection (the model is traceable up to its lookups), not none
    assert piped["pipelined"] == TABLE_COLLECTIONS[model] and plain["pipelined"] == 0
    assert plain["losses"][-1] < plain["losses"][0]  # it learns
    assert len(plain["losses"]) == 2 * 6 and all(len(v) == 100 for v in plain["val"])
    assert_same(plain, piped)


def test_the_comparison_fails_on_another_batch_order(inputs: CellInputs) -> None:
    plain = run("dlrm", inputs, pipelined=False)
    swapped = run("dlrm", inputs, pipelined=True, reverse_last=True)
    with pytest.raises(AssertionError):
        assert_same(plain, swapped)
    assert swapped["losses"][:10] == plain["losses"][:10] and swapped["losses"][10:] != plain["losses"][10:]


@pytest.mark.parametrize("model", ["dlrm", "sim"])
def test_train_cell_gives_the_same_figures_through_the_pipeline(inputs: CellInputs, model: str) -> None:
    cfg = dataclasses.replace(CFG, epochs=2)
    plain = train_cell(model, inputs, dataclasses.replace(cfg, pipeline="none"), seed=1)
    piped = train_cell(model, inputs, dataclasses.replace(cfg, pipeline="sparse_dist"), seed=1)
    assert (plain.pipeline, piped.pipeline) == ("none", "sparse_dist")
    assert [h.train_loss for h in piped.history] == [h.train_loss for h in plain.history]
    assert [h.val for h in piped.history] == [h.val for h in plain.history]
    assert piped.test == plain.test and piped.best_epoch == plain.best_epoch
    assert piped.test_predictions.equals(plain.test_predictions)


def test_auto_pipelines_a_sharded_ranker_on_cuda_only(inputs: CellInputs) -> None:
    cuda = torch.device("cuda")
    assert pipeline_kind("auto", True, cuda) == "sparse_dist"
    assert pipeline_kind("auto", True, CPU) == "none" and pipeline_kind("auto", False, cuda) == "none"
    assert pipeline_kind("sparse_dist", True, CPU) == "sparse_dist" and pipeline_kind("none", True, cuda) == "none"
    r = train_cell("dlrm", inputs, dataclasses.replace(CFG, epochs=1), seed=0)  # auto, sharded, on CPU
    assert r.pipeline == "none"


def test_pipeline_setting_is_checked_and_not_in_the_cell_key() -> None:
    with pytest.raises(RankConfigError, match=r"TrainConfig\.pipeline: expected 'auto' or 'none' unless rank\.sharded"):
        TrainConfig(pipeline="sparse_dist")
    with pytest.raises(RankConfigError, match=r"TrainConfig\.pipeline: expected one of auto, sparse_dist, none"):
        TrainConfig(pipeline="fast")  # type: ignore[arg-type]
    a, b = (rank_key_slice(dataclasses.replace(CFG, pipeline=p)) for p in ("none", "sparse_dist"))
    assert a == b and "pipeline" not in a and a["sharded"] is True


class _Untraceable(torch.nn.Module):
    """A plugin-style ranker whose forward branches on a tensor's shape above its tables: torch.fx cannot trace it."""

    def __init__(self, ranker: torch.nn.Module) -> None:
        super().__init__()
        self.ranker = ranker

    def forward(self, batch):  # noqa: ANN001, ANN201
        if batch.hist.shape[1] > 0:
            return self.ranker(batch)
        return self.ranker(batch)


def test_an_untraceable_ranker_gets_a_config_error_naming_the_setting(inputs: CellInputs) -> None:
    from benchmark.core.errors import ConfigError

    fs, layout = inputs.features, batch_layout("dlrm")
    model = RankerTrain(_Untraceable(build_model("dlrm", fs, CFG)))
    local = RankerTrain(_Untraceable(build_model("dlrm", fs, CFG, meta=True)))
    dmp, opt = shard_model(local, model.state_dict(), device=CPU, sharding="table_wise")
    arrays = split_arrays(inputs.train, max_hist=CFG.max_hist, n_items=N, n_users=U)
    batches = [rank_batch(fs, arrays, idx, layout, 0, 1)[0] for idx in batch_rows(len(arrays), CFG.batch_size)]
    dmp.train()
    with pytest.raises(ConfigError, match=r'rank\.pipeline: .* cannot be traced .* or set rank\.pipeline = "none"'):
        next(run_batches(dmp, batches, [opt], make_pipeline("sparse_dist", dmp, [opt], CPU)))
    assert len(list(run_batches(dmp, batches, [opt]))) == len(batches)  # the plain loop trains it
