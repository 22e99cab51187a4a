"""Settings of the rankers and their training loop: the `[rank]` section of a suite. Imports no torch.

    [rank]        TrainConfig: epochs, batch sizes, optimisers, embedding width, early stopping
    [rank.dlrm]   DlrmConfig      [rank.din]   DinConfig      [rank.sim]   SimConfig

Every field is checked when the dataclass is built (RankConfigError names the field), so a suite file
with a bad value fails at load, before any stage runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from recsys_models.errors import RankConfigError, require

ModelName = Literal["dlrm", "din", "sim"]
MODELS: tuple[ModelName, ...] = get_args(ModelName)


def batch_layout(model_name: str) -> Literal["pooled", "sequence"]:
    """The batch layout a model reads: DLRM pools every bag ("pooled"); DIN and SIM attend over per-item
    representations ("sequence"). Here, not in the factory, so that planning code can ask without torch."""
    return "pooled" if model_name == "dlrm" else "sequence"
ShardingName = Literal["auto", "table_wise", "row_wise", "column_wise"]
SHARDINGS: tuple[ShardingName, ...] = get_args(ShardingName)
TableOptimizerName = Literal["adagrad", "rowwise_adagrad", "adam"]  # recsys_models.optimizers.table_optimizer
TABLE_OPTIMIZERS: tuple[TableOptimizerName, ...] = get_args(TableOptimizerName)
PipelineName = Literal["auto", "sparse_dist", "none"]  # benchmark.cells.pipeline
PIPELINES: tuple[PipelineName, ...] = get_args(PipelineName)
CW_ALIGN = 4  # fbgemm's column alignment: a column shard's width is a multiple of 4 (torchrec `_find_base_dim`)


def column_shard_width(dim: int, world: int) -> int | None:
    """Width of the column shards "column_wise" cuts a D = `dim` wide table into on a world of `world` ranks: a
    multiple of 4 dividing D, below D (so a table is split even on one rank), the narrowest that makes at most
    max(world, 2) shards, else the widest there is (D = 12 on 2 ranks: three 4-wide shards); None when D has no
    such width (D not a multiple of 4, or D = 4)."""
    widths = [w for w in range(CW_ALIGN, dim, CW_ALIGN) if dim % w == 0]
    fits = [w for w in widths if w * max(world, 2) >= dim]
    return min(fits) if fits else max(widths, default=None)


def sharding_problem(sharding: str, emb_optimizer: str, embedding_dim: int) -> str | None:
    """Why `rank.sharding` cannot be honoured with these settings (None: it can). Checked at config load
    (TrainConfig) and again by recsys_models.sharding.shard_model for callers without a TrainConfig."""
    if sharding != "column_wise":
        return None
    if column_shard_width(embedding_dim, 1) is None:
        return (f"'column_wise' splits every table's columns into shards whose width is a multiple of {CW_ALIGN} "
                f"(fbgemm), so it needs rank.embedding_dim a multiple of {CW_ALIGN} and at least {2 * CW_ALIGN}; got "
                f"rank.embedding_dim = {embedding_dim} (use 'table_wise' or 'row_wise')")
    if emb_optimizer == "rowwise_adagrad":
        return ("'column_wise' with rank.emb_optimizer = 'rowwise_adagrad': fbgemm keeps one accumulator per row of "
                "each column shard, not of the whole row, so the sharded update would differ from the unsharded "
                "one; use 'adagrad' or another rank.sharding")
    return None


def _widths(owner: object, name: str) -> None:
    require(owner, name, all(w >= 1 for w in getattr(owner, name)), "a list of positive layer widths")


@dataclass(frozen=True)
class DlrmConfig:
    """dense_arch / over_arch: hidden widths of torchrec's DLRM bottom and top MLPs (their last layers, D and 1,
    are added); dcn: torchrec DLRM_DCN (low-rank DCN-v2 interaction) instead of the dot interaction."""

    dense_arch: tuple[int, ...] = (64,)
    over_arch: tuple[int, ...] = (128, 64)
    dcn: bool = False
    dcn_layers: int = 3
    dcn_low_rank: int = 16

    def __post_init__(self) -> None:
        _widths(self, "dense_arch")
        _widths(self, "over_arch")
        require(self, "dcn_layers", self.dcn_layers >= 1, "an integer >= 1")
        require(self, "dcn_low_rank", self.dcn_low_rank >= 1, "an integer >= 1")


@dataclass(frozen=True)
class DinConfig:
    """attention_hidden: DIN's activation unit (Zhou et al. 2018: 36 units); attention_softmax: normalise the
    attention scores (FuxiCTR option; DIN keeps raw scores); mlp: hidden widths of the head; max_len: latest
    history items attended; user_context: feed the pooled user id and user features to the MLP (Zhou et al.
    2018; off = RecBole 1.2.1's DIN, whose DNN reads no user feature: docs/peer-parity.md)."""

    attention_hidden: tuple[int, ...] = (36,)
    attention_softmax: bool = False
    mlp: tuple[int, ...] = (128, 64)
    max_len: int = 50
    user_context: bool = True

    def __post_init__(self) -> None:
        require(self, "attention_hidden", bool(self.attention_hidden) and all(w >= 1 for w in self.attention_hidden),
                "a non-empty list of positive layer widths")
        _widths(self, "mlp")
        require(self, "max_len", self.max_len >= 1, "an integer >= 1")


@dataclass(frozen=True)
class SimConfig:
    """search: the GSU (hard = code-prefix match, QARM; soft = inner-product top-k); search_codes: which codes
    hard search matches on — "frozen": one frozen RQ code set for every variant, so SIM's variants differ only
    in their features; "own": each variant's own RQ codes (QARM's setting; variants without RQ codes then use
    soft search); prefix_depth: code levels compared by hard search; top_k: history items the GSU keeps;
    recent: the short-term sequence length; heads: attention heads of the ESU; mlp: hidden widths of the head."""

    search: Literal["hard", "soft"] = "hard"
    search_codes: Literal["frozen", "own"] = "frozen"
    prefix_depth: int = 1
    top_k: int = 50
    recent: int = 10
    heads: int = 2
    mlp: tuple[int, ...] = (128, 64)

    def __post_init__(self) -> None:
        for name in ("prefix_depth", "top_k", "recent", "heads"):
            require(self, name, getattr(self, name) >= 1, "an integer >= 1")
        _widths(self, "mlp")


@dataclass(frozen=True)
class TrainConfig:
    """epochs: at most; batch_size / eval_batch_size: impressions per step; lr, weight_decay: Adam on the dense
    parameters; emb_lr, emb_optimizer: the embedding tables' optimiser, "adagrad" (per element), "rowwise_adagrad"
    (one accumulator per row) or "adam", the same update sharded or not (recsys_models.optimizers);
    embedding_dim: D of every table;
    patience: epochs without a better validation AUC before stopping; max_hist: history items kept per row;
    sharded: the tables in a TorchRec DistributedModelParallel (fused TBE kernels + the table optimiser fused in
    backward) even in one process (`--nproc-per-node N > 1` sets it: every ranker is sharded on several ranks);
    sharding: how the planner places each table, "auto" (its own choice) or every table "table_wise",
    "row_wise" or "column_wise" (recsys_models.sharding; column-wise cuts every table into shards of a width
    that is a multiple of 4, so it needs embedding_dim a multiple of 4 and at least 8);
    pipeline: how a sharded ranker's batches run, "sparse_dist" (TorchRec's TrainPipelineSparseDist: the next
    batch's copy to the device and the sharded tables' input distribution overlap this batch's forward and
    backward; needs sharded), "none" (one batch after the other) or "auto" (sparse_dist for a sharded ranker on
    CUDA, else none). It changes when a batch moves, not what a step computes, so it is not in a cell's key."""

    epochs: int = 10
    batch_size: int = 1024
    eval_batch_size: int = 4096
    lr: float = 1e-3
    emb_lr: float = 0.05
    emb_optimizer: TableOptimizerName = "adagrad"
    embedding_dim: int = 16
    patience: int = 2
    weight_decay: float = 0.0
    max_hist: int = 50
    sharded: bool = False
    sharding: ShardingName = "auto"
    pipeline: PipelineName = "auto"
    dlrm: DlrmConfig = field(default_factory=DlrmConfig)
    din: DinConfig = field(default_factory=DinConfig)
    sim: SimConfig = field(default_factory=SimConfig)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size", "embedding_dim", "max_hist"):
            require(self, name, getattr(self, name) >= 1, "an integer >= 1")
        require(self, "patience", self.patience >= 0, "an integer >= 0")
        require(self, "lr", self.lr > 0, "a number > 0")
        require(self, "emb_lr", self.emb_lr > 0, "a number > 0")
        require(self, "weight_decay", self.weight_decay >= 0, "a number >= 0")
        require(self, "pipeline", self.pipeline in PIPELINES, f"one of {', '.join(PIPELINES)}")
        require(self, "pipeline", self.pipeline != "sparse_dist" or self.sharded,
                "'auto' or 'none' unless rank.sharded = true (TrainPipelineSparseDist pipelines the sharded "
                "tables' input distribution; there is none without them)")
        problem = sharding_problem(self.sharding, self.emb_optimizer, self.embedding_dim)
        if problem:
            raise RankConfigError(type(self).__name__, "sharding", problem)
