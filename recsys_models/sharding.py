"""Single-process DistributedModelParallel for the DLRM: fused TBE kernels + fused optimizer on CPU.

deps.md §5(a): on CPU the fused (fbgemm TBE) table-wise kernel with the optimizer applied in backward
is the fast path even on one process (≈58k vs ≈37k samples/s unsharded at batch 4096). The process
group is gloo over an in-memory HashStore, so nothing listens on a port.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.types import ShardingEnv
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from recsys_models.dlrm import DlrmRanker


def ensure_single_process_group() -> None:
    """A world of one gloo rank, unless a process group already exists (e.g. under torchrun)."""
    if not dist.is_initialized():
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)


def shard_dlrm(
    ranker: DlrmRanker,
    *,
    emb_optimizer: Literal["adagrad", "adam"] = "adagrad",
    emb_lr: float = 0.05,
    dense_lr: float = 1e-3,
    weight_decay: float = 0.0,
) -> tuple[DistributedModelParallel, CombinedOptimizer]:
    """Shard every table table-wise with the fused kernel; returns the DMP module and one optimizer.

    Build `ranker` with `device=torch.device("meta")` so tables are allocated once, by the sharder.
    """
    ensure_single_process_group()
    ebc = ranker.dlrm.sparse_arch.embedding_bag_collection
    opt_cls = torch.optim.Adagrad if emb_optimizer == "adagrad" else torch.optim.Adam
    apply_optimizer_in_backward(opt_cls, ebc.parameters(), {"lr": emb_lr})
    tables = [c.name for c in ebc.embedding_bag_configs()]
    constraints = {t: ParameterConstraints(sharding_types=["table_wise"], compute_kernels=["fused"]) for t in tables}
    world = dist.get_world_size()
    topology = Topology(world_size=world, compute_device="cpu", local_world_size=world)
    sharder = EmbeddingBagCollectionSharder()
    pg = dist.GroupMember.WORLD
    assert pg is not None
    plan = EmbeddingShardingPlanner(topology=topology, constraints=constraints).collective_plan(ranker, [sharder], pg)
    dmp = DistributedModelParallel(
        module=ranker, device=torch.device("cpu"), plan=plan, sharders=[sharder], env=ShardingEnv.from_process_group(pg)
    )
    dense = KeyedOptimizerWrapper(
        dict(in_backward_optimizer_filter(dmp.named_parameters())),
        lambda params: torch.optim.Adam(params, lr=dense_lr, weight_decay=weight_decay),
    )
    return dmp, CombinedOptimizer([dmp.fused_optimizer, dense])
