"""Sharded rankers: TorchRec DistributedModelParallel over every embedding table of DLRM, DIN and SIM.

    model (tables on meta) + the unsharded model's state ─ shard_model ─► (DMP, one CombinedOptimizer)

- Tables: the EmbeddingBagCollections (DLRM; the context and the item side of DIN/SIM) are sharded by the `EmbeddingShardingPlanner` over the real world topology
  (world size, local world size, device type): "auto" is the planner's own choice among the fused kernels'
  sharding types; "table_wise" / "row_wise" / "column_wise" constrain every table to that type
  (`ParameterConstraints`). On CPU TorchRec's EBC sharder offers no row_wise (deps.md §5b), although the fused
  CPU kernel runs it: `CpuRowWiseEBCSharder` offers it, so the same planner makes that plan too. "column_wise"
  really cuts columns (`column_shard_width`: at least two shards, even at D = 16, where TorchRec's default
  minimum width of 128 kept every table whole). The planner sees the real per-rank batch and, on CUDA, the
  device's memory.
- Optimisers: the tables' optimiser is fused into the backward pass (fbgemm TBE; `apply_optimizer_in_backward`)
  with the settings of the unsharded path (recsys_models.optimizers: torch.optim.Adagrad -> EXACT_ADAGRAD, per
  element, eps 1e-10 as torch's, so every sharding type updates a row alike and as plain torch does); the dense
  parameters are data-parallel (DMP wraps them in DDP) under Adam.
- Identical initial weights whatever the world size (the TorchRec way, as in its own tests'
  `copy_state_dict`): every rank builds the unsharded model from the seed, the sharded model is built with its
  tables on the meta device, and each rank copies its shards' slices (and the dense weights) out of the
  unsharded state.
- Gradient scale: DDP averages the dense gradients over ranks, and TorchRec's all-to-all / reduce-scatter
  backward divides the table gradients by the world size too (`torchrec.distributed.comm_ops`
  GRADIENT_DIVISION, on by default). So when rank r's loss is W * (sum of its rows' losses) / (rows in the
  global batch) (`global_mean_bce`; the local mean when the W parts are equal), both gradients equal the
  one-process gradient of the same global batch, an uneven last batch included.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torchrec.distributed.embedding import EmbeddingCollectionSharder
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.types import ShardingEnv, ShardingPlan, ShardingType
from torchrec.modules.embedding_configs import BaseEmbeddingConfig
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from recsys_models.config import (
    SHARDINGS,
    ShardingName,
    TableOptimizerName,
    column_shard_width,
    sharding_problem,
)
from recsys_models.errors import RecsysModelError
from recsys_models.optimizers import table_optimizer


def ensure_process_group(device: torch.device | None = None) -> dist.ProcessGroup:
    """The default process group; a world of one (gloo on CPU, nccl on CUDA, over an in-memory HashStore, so
    nothing listens on a port) when none exists yet. Under torchrun the launcher's group is used as it is."""
    if not dist.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    pg = dist.GroupMember.WORLD
    assert pg is not None
    return pg


def table_modules(model: nn.Module) -> list[EmbeddingBagCollection | EmbeddingCollection]:
    """The TorchRec table collections of a ranker, in module order."""
    return [m for m in model.modules() if isinstance(m, EmbeddingBagCollection | EmbeddingCollection)]


def table_configs(model: nn.Module) -> list[BaseEmbeddingConfig]:
    """The config (name, rows, D) of every embedding table of a ranker (EmbeddingBagCollection and
    EmbeddingCollection), in module order."""
    return [c for m in table_modules(model)
            for c in (m.embedding_bag_configs() if isinstance(m, EmbeddingBagCollection) else m.embedding_configs())]


def table_names(model: nn.Module) -> list[str]:
    """Names of every embedding table of a ranker (EmbeddingBagCollection and EmbeddingCollection)."""
    return [c.name for c in table_configs(model)]


class CpuRowWiseEBCSharder(EmbeddingBagCollectionSharder):
    """TorchRec's EBC sharder, offering row_wise on CPU too (its fused CPU kernel runs it; TorchRec lists it for
    CUDA only), so the planner can place row-wise pooled tables on a CPU world."""

    def sharding_types(self, compute_device_type: str) -> list[str]:
        """TorchRec's sharding types for the device, plus row_wise on CPU."""
        types = super().sharding_types(compute_device_type)
        if compute_device_type == "cpu" and ShardingType.ROW_WISE.value not in types:
            types.append(ShardingType.ROW_WISE.value)
        return types


def sharders() -> list:
    """One sharder per table-collection type: pooled (EBC) and sequence (EC) tables."""
    return [CpuRowWiseEBCSharder(), EmbeddingCollectionSharder()]


def plan_sharding(model: nn.Module, sharding: ShardingName, device: torch.device, pg: dist.ProcessGroup,
                  batch_size: int | None = None) -> ShardingPlan:
    """The planner's plan over the world's real topology, fused kernels only, every table of `sharding` type
    ("auto": the planner's choice). Rank 0 plans and broadcasts (`collective_plan`). batch_size: the global
    batch (rank.batch_size); the planner is given each rank's part of it (TorchRec's `batch_size` is per rank)."""
    if sharding not in SHARDINGS:
        raise RecsysModelError(f"sharding: expected one of {', '.join(SHARDINGS)}, got {sharding!r}")
    world = dist.get_world_size(pg)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    planner_log = logging.getLogger("torchrec.distributed.planner")
    level = planner_log.level
    planner_log.setLevel(logging.ERROR)  # it warns about every filtered kernel and the hand-built topology
    try:
        return make_planner(model, sharding, device, world, local, batch_size).collective_plan(model, sharders(), pg)
    finally:
        planner_log.setLevel(level)


def make_planner(model: nn.Module, sharding: ShardingName, device: torch.device, world: int,
                 local_world: int | None = None, batch_size: int | None = None) -> EmbeddingShardingPlanner:
    """The EmbeddingShardingPlanner `plan_sharding` uses, for a world of `world` ranks (`local_world` per node):
    every table constrained to the fused kernel and `sharding`; "column_wise" cuts each table into shards of
    `column_shard_width` (TorchRec's default minimum width is 128, so a narrower table stayed whole, i.e.
    table-wise); on CUDA the devices' memory is the real one (`total_memory`), not TorchRec's assumed 32 GB;
    batch_size: the global batch, of which each rank takes ceil(batch_size / world)."""
    types = None if sharding == "auto" else [sharding]
    constraints = {}
    for c in table_configs(model):
        width = column_shard_width(c.embedding_dim, world) if sharding == "column_wise" else None
        if sharding == "column_wise" and width is None:
            raise RecsysModelError(f"rank.sharding: {sharding_problem(sharding, 'adagrad', c.embedding_dim)}")
        constraints[c.name] = ParameterConstraints(sharding_types=types, compute_kernels=["fused"],
                                                   min_partition=width)
    hbm = None
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        hbm = torch.cuda.get_device_properties(index).total_memory
    topology = Topology(world_size=world, compute_device=device.type, local_world_size=local_world or world,
                        hbm_cap=hbm)
    local_batch = None if batch_size is None else -(-batch_size // world)
    with warnings.catch_warnings():
        # torchrec 1.8's planner defaults to HeuristicalStorageReservation and says so (a FutureWarning) on every
        # construction; it only sizes the dense-tensor reserve of the plan, and ours plans a known topology
        warnings.filterwarnings("ignore", message="HeuristicalStorageReservation is known to cause issues",
                                category=FutureWarning)
        return EmbeddingShardingPlanner(topology=topology, constraints=constraints, batch_size=local_batch)


def plan_summary(plan: ShardingPlan) -> dict[str, str]:
    """{table: "<sharding type> ranks [..]"}: what the planner decided, for logs and the run record."""
    out = {}
    for module_plan in plan.plan.values():
        for table, ps in module_plan.items():  # type: ignore[attr-defined]
            out[table] = f"{ps.sharding_type} ranks {list(ps.ranks or [])}"
    return out


def copy_into_sharded(dmp: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy an unsharded model's state into a sharded one: every local shard of a ShardedTensor gets its slice
    of the full tensor (by the shard's offsets), plain tensors are copied whole. Keys must match one to one."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    local_state = dmp.state_dict()
    missing = sorted(set(local_state) - set(state))
    if missing:
        raise RecsysModelError(f"copy_into_sharded: the unsharded state lacks {missing[:3]}")
    with torch.no_grad():
        for name, target in local_state.items():
            full = state[name].detach()
            if isinstance(target, ShardedTensor):
                for shard in target.local_shards():
                    rows, cols = shard.tensor.shape
                    r0, c0 = shard.metadata.shard_offsets
                    shard.tensor.copy_(full[r0 : r0 + rows, c0 : c0 + cols])
            else:
                target.copy_(full)


def shard_model(
    model: nn.Module,
    init_state: Mapping[str, torch.Tensor],
    *,
    device: torch.device,
    sharding: ShardingName = "auto",
    emb_optimizer: TableOptimizerName = "adagrad",
    emb_lr: float = 0.05,
    dense_lr: float = 1e-3,
    weight_decay: float = 0.0,
    batch_size: int | None = None,
) -> tuple[DistributedModelParallel, CombinedOptimizer]:
    """Shard `model` (its tables built on the meta device) over the default process group (a world of one if
    none), load `init_state` (the unsharded model's state_dict) and return the DMP module and one optimiser
    (fused table optimiser + Adam over the dense parameters). With each rank's loss from `global_mean_bce`,
    gradients are those of one process on the global batch (see the module docstring). The tables' optimiser
    is `table_optimizer(emb_optimizer, emb_lr)`, the same settings as the unsharded path's. batch_size: the
    global batch, for the planner's estimates (None: TorchRec's default)."""
    if emb_optimizer == "adam" and device.type == "cpu":
        raise RecsysModelError("rank.emb_optimizer: 'adam' has no fused CPU kernel (fbgemm) for sharded tables; use "
                               "'adagrad' or 'rowwise_adagrad' with rank.sharded or --nproc-per-node on CPU")
    for dim in sorted({c.embedding_dim for c in table_configs(model)}):
        problem = sharding_problem(sharding, emb_optimizer, dim)
        if problem:
            raise RecsysModelError(f"rank.sharding: {problem}")
    pg = ensure_process_group(device)
    emb_params = [p for m in table_modules(model) for p in m.parameters()]
    if not emb_params:
        raise RecsysModelError("shard_model: the model has no EmbeddingBagCollection / EmbeddingCollection")
    table_opt = table_optimizer(emb_optimizer, emb_lr)
    apply_optimizer_in_backward(table_opt.cls, emb_params, dict(table_opt.kwargs))
    plan = plan_sharding(model, sharding, device, pg, batch_size)
    with warnings.catch_warnings():
        # torchrec 1.8 wraps the dense part in DistributedDataParallel(broadcast_buffers=...), which torch 2.13
        # deprecates (a FutureWarning per model); the argument is torchrec's, not ours
        warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)
        dmp = DistributedModelParallel(module=model, device=device, plan=plan, sharders=sharders(),
                                       env=ShardingEnv.from_process_group(pg))
    dmp.plan_summary = plan_summary(plan)  # type: ignore[assignment]
    copy_into_sharded(dmp, init_state)
    dense = KeyedOptimizerWrapper(
        dict(in_backward_optimizer_filter(dmp.named_parameters())),
        lambda params: torch.optim.Adam(params, lr=dense_lr, weight_decay=weight_decay),
    )
    return dmp, CombinedOptimizer([dmp.fused_optimizer, dense])


def global_mean_bce(logits: torch.Tensor, labels: torch.Tensor, global_rows: int, world: int,
                    real: torch.Tensor | None = None) -> torch.Tensor:
    """logits, labels (B_r,) of this rank's rows -> world * (sum of their BCE) / global_rows; real (B_r,) bool
    masks out padding rows. Averaged over the ranks (as DDP and TorchRec average gradients) it is the
    one-process mean BCE of the global batch."""
    weight = None if real is None else real.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, labels, weight=weight, reduction="sum")
    return bce * (world / max(global_rows, 1))
