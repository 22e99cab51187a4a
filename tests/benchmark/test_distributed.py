"""Two gloo processes against one: sharded rankers, exact metric reduction, DDP alignment; the launcher.

One spawned world of 2 ranks runs every 2-rank case (tests/benchmark/dist_worker.py); each test compares what
rank 0 (and rank 1) saw with the same computation in this process. Identical initial weights, the same fused
optimiser and the same global batches in both, so the 2-process results are the 1-process ones up to float
summation order.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmark.cells.metrics import all_metrics, auc
from benchmark.cells.train import train_cell
from benchmark.core.world import World, reassemble_rows
from benchmark.dist import launch as distributed

WORKER = Path(__file__).with_name("dist_worker.py")


def _worker_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("dist_worker", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


W = _worker_module()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("two_ranks")
    distributed.spawn(distributed.call_file, 2, str(WORKER), "main", str(out))
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize(("model", "sharding"), W.CASES)
def test_rankers_on_two_ranks_match_one(two_ranks: list[dict], model: str, sharding: str) -> None:
    one = train_cell(model, W.inputs(), dataclasses.replace(W.CFG, sharding=sharding), seed=0)
    two, other = two_ranks[0]["rankers"][(model, sharding)], two_ranks[1]["rankers"][(model, sharding)]
    assert abs(two["test_auc"] - one.test["all"]["auc"]) < 1e-3
    assert abs(two["test_gauc"] - one.test["all"]["gauc"]) < 1e-3
    assert two["best_epoch"] == one.best_epoch
    assert two["val_auc"] == pytest.approx([h.val["auc"] for h in one.history], abs=1e-3)
    np.testing.assert_allclose(two["pred"], one.test_predictions["pred"].to_numpy(), atol=1e-4)
    # every table placed as asked, over both ranks (row-wise: every table on both; column-wise: every table in
    # two column shards, D = 8 -> 4 + 4); both ranks agree
    assert all(p.startswith(sharding) for p in two["plan"].values()) and two["plan"]
    shards = {t: eval(p.split("ranks ")[1]) for t, p in two["plan"].items()}  # noqa: S307 - "[0, 1]"
    assert {r for rs in shards.values() for r in rs} == {0, 1}
    if sharding == "column_wise":
        assert all(len(rs) == 2 for rs in shards.values())
    # rank 1 got rank 0's metrics (and decisions: the same epochs), but only rank 0 assembled the predictions
    assert other["test_auc"] == two["test_auc"] and other["val_auc"] == two["val_auc"]
    assert other["best_epoch"] == two["best_epoch"] and other["pred"] is None


@pytest.mark.slow
@pytest.mark.parametrize(("model", "sharding"), W.PIPELINE_CASES)
def test_the_sparse_dist_pipeline_on_two_ranks_equals_the_plain_loop(two_ranks: list[dict], model: str,
                                                                     sharding: str) -> None:
    """TrainPipelineSparseDist on 2 gloo ranks (each rank's part of every batch, the predictions gathered through
    the pipeline in eval mode) gives the plain loop's figures to the bit, on both ranks."""
    for rank in two_ranks:
        plain, piped = rank["rankers"][(model, sharding)], rank["pipelined"][(model, sharding)]
        assert (plain["pipeline"], piped["pipeline"]) == ("none", "sparse_dist")
        for k in ("test_auc", "test_gauc", "best_epoch", "val_auc", "train_loss", "plan"):
            assert piped[k] == plain[k], k
    np.testing.assert_array_equal(two_ranks[0]["pipelined"][(model, sharding)]["pred"],
                                  two_ranks[0]["rankers"][(model, sharding)]["pred"])
    assert two_ranks[1]["pipelined"][(model, sharding)]["pred"] is None


@pytest.mark.slow
def test_cross_rank_metrics_equal_one_process_exactly(two_ranks: list[dict]) -> None:
    users, labels, preds, _ = W.metric_data()
    want = all_metrics(users, labels, preds)
    assert two_ranks[0]["metrics"]["exact_rows"]
    assert two_ranks[0]["metrics"]["gathered"] == want  # bit for bit, not approximately
    assert two_ranks[1]["metrics"] == {"gathered": None, "exact_rows": None}  # rows gathered to rank 0 only


@pytest.mark.slow
def test_alignment_loss_and_gradients_equal_one_process(two_ranks: list[dict]) -> None:
    one = W.align_step(False)
    for rank in two_ranks:  # each rank's loss is the global batch's loss (negatives gathered from both)
        assert rank["align_step"]["loss"] == pytest.approx(one["loss"], rel=1e-6)
        for name, g in one["grads"].items():
            torch.testing.assert_close(rank["align_step"]["grads"][name], g, rtol=1e-5, atol=1e-7)
    run = W.align_run(False)
    two = two_ranks[0]["align_run"]
    assert two["losses"] == pytest.approx(run["losses"], rel=1e-5)
    np.testing.assert_allclose(two["embeddings"], run["embeddings"], atol=1e-5)
    np.testing.assert_array_equal(two_ranks[1]["align_run"]["embeddings"], two["embeddings"])


def test_reassemble_rows_uneven_parts_and_why_not_average() -> None:
    rng = np.random.default_rng(1)
    users, labels, preds = rng.integers(0, 5, 50), rng.integers(0, 2, 50), rng.random(50)
    perm = rng.permutation(50)
    parts = [perm[:7], perm[7:30], perm[30:]]  # three ranks, uneven and interleaved rows
    got = reassemble_rows([(p, preds[p]) for p in parts], 50)
    assert np.array_equal(got, preds)
    assert all_metrics(users, labels, got) == all_metrics(users, labels, preds)
    mean_of_parts = np.mean([auc(labels[p], preds[p]) for p in parts])
    assert mean_of_parts != pytest.approx(auc(labels, preds), abs=1e-6)  # why the parts are gathered first
    with pytest.raises(Exception, match="exactly once"):
        reassemble_rows([(parts[0], preds[parts[0]]), (parts[0], preds[parts[0]])], 50)


def test_rank_rows_pad_to_equal_parts() -> None:
    from recsys_models.batching import rank_rows

    idx = torch.tensor([5, 3, 8, 1, 9])
    parts = [rank_rows(idx, r, 3) for r in range(3)]
    assert [len(p) for p, _ in parts] == [2, 2, 2]  # equal sizes, as row-wise sharding needs
    assert torch.cat([p[m] for p, m in parts]).tolist() == idx.tolist()  # the real rows are the batch
    p, m = rank_rows(torch.tensor([4]), 1, 2)  # fewer rows than ranks: one padding row
    assert p.tolist() == [4] and m.tolist() == [False]


def test_launch_command_and_flags() -> None:
    argv = ["run", "synthetic-tiny", "--nproc-per-node", "2", "--set", "rank.epochs=1", "--master-port=1234"]
    assert distributed.strip_launch_flags(argv) == ["run", "synthetic-tiny", "--set", "rank.epochs=1"]
    args = SimpleNamespace(nproc_per_node=2, nnodes=1, node_rank=0, master_addr="127.0.0.1", master_port=None)
    cmd = distributed.launch_command(argv, args)
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in cmd
    assert cmd[-7:] == ["benchmark", "run", "synthetic-tiny", "--set", "rank.epochs=1", "--set", "rank.sharded=true"]
    multi = distributed.launch_command(argv, SimpleNamespace(**{**vars(args), "nnodes": 2, "node_rank": 1}))
    assert "--standalone" not in multi and multi[multi.index("--node-rank") + 1] == "1"
    assert multi[multi.index("--master-port") + 1] == "29500"
    assert distributed.wants_launch(args) and not distributed.wants_launch(SimpleNamespace(**{**vars(args),
                                                                                            "nproc_per_node": 1}))


def test_failure_report_names_the_rank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from benchmark.core.errors import ConfigError

    monkeypatch.setenv(distributed.ERROR_STORE_ENV, f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("RANK", "1")
    world = World(1, 2, 1)
    world.where = "cell dlrm/id_only/seed0"
    try:
        raise ValueError("boom")
    except ValueError as e:
        distributed.record_failure(world, e)
    store = distributed.error_store(f"file://{tmp_path / 'store'}")
    [got] = distributed.read_failures(store, 2)
    assert (got["rank"], got["host"], got["kind"]) == (1, socket.gethostname(), "ValueError")
    assert distributed.failure_line([got]).startswith(
        f"the distributed run failed: rank 1 on node {socket.gethostname()} (cell dlrm/id_only/seed0): ValueError: boom")
    distributed.record_failure(world, ConfigError("suite.device: no GPU"))
    [got] = distributed.read_failures(store, 2)
    assert "(cell dlrm/id_only/seed0): user error: suite.device: no GPU" in distributed.failure_line([got])
