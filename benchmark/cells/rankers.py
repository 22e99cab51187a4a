"""The rankers a cell can train, found by key in benchmark.core.registry.RANKERS.

A ranker is a RankerSpec: the batch layout it reads ("pooled": every bag pooled, as DLRM; "sequence": per-item
representations of the target and the history, as DIN and SIM) and `build(fs, cfg, ctx) -> nn.Module`, a module
mapping a recsys_models.features.RankBatch to logits (B,). The training loop owns the loss (it wraps the module in
recsys_models.train_wrapper.RankerTrain, the loss inside as TorchRec's DLRMTrain), the optimisers, sharding (every
TorchRec EmbeddingBagCollection / EmbeddingCollection in the module is sharded the same way), the pipeline
(benchmark.cells.pipeline), the device, the metrics and the logging, so a plugin ranker gets all of them as the
built-ins do. The built-ins
(DLRM, DIN, SIM) are declared as entry points of the group qarm_bench.rankers in pyproject.toml, the door a
plugin package uses too (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from benchmark.core.registry import RANKERS


@dataclass(frozen=True)
class BuildContext:
    """search: SIM's search unit as the cell's plan decided it ("hard" / "soft"; None for other rankers);
    search_codes: (N, L_s) int64 codes hard search matches on; meta: allocate the tables on the meta device
    (the sharded path fills them)."""

    search: str | None = None
    search_codes: Any = None
    meta: bool = False


@dataclass(frozen=True)
class RankerSpec:
    name: str
    layout: Literal["pooled", "sequence"]
    build: Callable[[Any, Any, BuildContext], Any]
    description: str = ""


def get_ranker(name: str, setting: str = "suite.models") -> RankerSpec:
    return RANKERS.get_as(name, RankerSpec, setting)


def _device(ctx: BuildContext) -> Any:
    import torch

    return torch.device("meta") if ctx.meta else None


def _dlrm(fs: Any, cfg: Any, ctx: BuildContext) -> Any:
    from recsys_models.dlrm import build_dlrm

    return build_dlrm(fs.spec, cfg.dlrm, device=_device(ctx))


def _din(fs: Any, cfg: Any, ctx: BuildContext) -> Any:
    from recsys_models.din import build_din

    return build_din(fs.spec, fs.content, cfg.din, device=_device(ctx))


def _sim(fs: Any, cfg: Any, ctx: BuildContext) -> Any:
    from recsys_models.sim import build_sim

    return build_sim(fs.spec, fs.content, cfg.sim, search=ctx.search, search_codes=ctx.search_codes,
                     device=_device(ctx))


DLRM = RankerSpec("dlrm", "pooled", _dlrm, "torchrec DLRM over pooled bags of every feature")
DIN = RankerSpec("din", "sequence", _din, "target attention over the recent history")
SIM = RankerSpec("sim", "sequence", _sim, "a search unit over the long history, then target attention")
