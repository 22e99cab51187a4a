"""A cell's plan: what one (variant, model, seed) cell reads, decided before anything runs (no torch).

The one place where SIM's search unit is decided: `plan_cell` records the mode and the searched code set in the
CellPlan; the cell's inputs carry it to the model factory, and the cell's record reports it. Nothing later reads
it back off a config or a built model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmark.config.suite import SuiteConfig, slice_hash
from benchmark.config.variants import get_variant
from benchmark.core import __version__
from benchmark.core.configlib import plain_without_defaults
from benchmark.itemside import compute as P
from benchmark.itemside.stages import SIM_SEARCH_CODE_SET, ItemSideKeys
from qarm.quantize.config import TokenizeConfig
from recsys_models.config import TrainConfig


@dataclass(frozen=True)
class CellPlan:
    """One (variant, model, seed) cell, decided before it runs: the code set feeding its code features (and how
    they are tokenised or controlled), its VQ bag, its content vector, whether it reads item metadata, SIM's
    search unit (mode and the code set hard search matches on), the replicate seed of its item side, its key, and
    the split seed of its data (`cfg` is one split seed's config: benchmark.config.suite.split_seed_configs; the
    key covers the split seed through the data key upstream of it), and the item-side entries it reads (`reads`,
    the same entries whose keys its key covers: a worker may start the cell once these are sealed)."""

    variant: str
    model: str
    seed: int
    replicate_seed: int
    code_set: str | None
    control: str | None
    vq_set: str | None
    dense_source: str | None
    metadata: bool
    sim_search: str | None
    sim_search_codes: str | None
    key: str
    split_seed: int = 0
    reads: tuple[tuple[str, str], ...] = ()  # the item-side entries (stage, code set or "") the cell reads


# rank settings added after cell keys were recorded: out of the key while at their default (no key moved)
RANK_LATER_FIELDS = ("din.user_context",)


def rank_key_slice(rank: TrainConfig) -> dict[str, Any]:
    """The `[rank]` settings that enter a cell's key: all but `pipeline`, which decides when a batch moves
    (TorchRec's TrainPipelineSparseDist or the plain loop), not what a step computes
    (tests/benchmark/test_pipeline.py: the same losses and predictions), and without RANK_LATER_FIELDS left at
    their defaults."""
    out = plain_without_defaults(rank, RANK_LATER_FIELDS)
    del out["pipeline"]
    return out


def plan_cell(cfg: SuiteConfig, variant: str, model: str, seed: int, keys: ItemSideKeys) -> CellPlan:
    """Decide what the cell reads. SIM with `rank.sim.search = "hard"` matches on the frozen RQ codes for every
    variant (`search_codes = "frozen"`, one change at a time) or on the variant's own RQ codes ("own": a variant
    without RQ codes then has no prefix to match and uses the soft, inner-product search)."""
    v = get_variant(variant)
    q = cfg.quantize.quantizer
    code_set = P.code_set_name(v.codes, q) if v.codes else None
    vq_set = P.code_set_name(v.vq, "vq") if v.vq and code_set != P.code_set_name(v.vq, "vq") else None
    search, search_codes = None, None
    if model == "sim":
        sim = cfg.rank.sim
        if sim.search == "hard" and sim.search_codes == "frozen":
            search, search_codes = "hard", SIM_SEARCH_CODE_SET
        elif sim.search == "hard" and code_set is not None and q != "vq" and v.control is None:
            search, search_codes = "hard", code_set
        else:
            search = "soft"
    reads = [("data", "")]
    if v.dense:
        reads.append(("frozen" if v.dense == "frozen" else "align", ""))
    reads += [("codes", name) for name in dict.fromkeys(n for n in (code_set, vq_set, search_codes) if n)]
    upstream = [keys.key(stage, inst) for stage, inst in reads]
    slice_ = {"rank": rank_key_slice(cfg.rank), "variant": variant, "model": model, "seed": seed, "replicate_seed": keys.seed,
              "quantizer": q if (v.codes or v.vq) else None, "sim_search": search, "sim_search_codes": search_codes}
    if v.codes and q != "vq" and cfg.quantize.tokens != TokenizeConfig():  # only when set: default keys unchanged
        slice_["tokens"] = cfg.quantize.tokens
    if keys.device_class != "cpu":  # a cell trained on a GPU is another result; CPU keys unchanged
        slice_["device"] = keys.device_class
    key = slice_hash(slice_, *upstream, version=__version__)
    return CellPlan(variant, model, seed, keys.seed, code_set, v.control, vq_set, v.dense, v.metadata, search,
                    search_codes, key, cfg.data.split.seed, tuple(reads))
