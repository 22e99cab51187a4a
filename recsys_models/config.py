"""Settings of the rankers and their training loop: the `[rank]` section of a suite. Imports no torch.

    [rank]        TrainConfig: epochs, batch sizes, optimisers, embedding width, early stopping
    [rank.dlrm]   DlrmConfig      [rank.din]   DinConfig      [rank.sim]   SimConfig

Every field is checked when the dataclass is built (RankConfigError names the field), so a suite file
with a bad value fails at load, before any stage runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from recsys_models.errors import require

ModelName = Literal["dlrm", "din", "sim"]
MODELS: tuple[ModelName, ...] = get_args(ModelName)
ShardingName = Literal["auto", "table_wise", "row_wise", "column_wise"]
SHARDINGS: tuple[ShardingName, ...] = get_args(ShardingName)


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
    history items attended."""

    attention_hidden: tuple[int, ...] = (36,)
    attention_softmax: bool = False
    mlp: tuple[int, ...] = (128, 64)
    max_len: int = 50

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
    parameters; emb_lr, emb_optimizer: the embedding tables' optimiser; embedding_dim: D of every table;
    patience: epochs without a better validation AUC before stopping; max_hist: history items kept per row;
    sharded: the tables in a TorchRec DistributedModelParallel (fused TBE kernels + the table optimiser fused in
    backward) even in one process (`--nproc-per-node N > 1` sets it: every ranker is sharded on several ranks);
    sharding: how the planner places each table, "auto" (its own choice) or every table "table_wise",
    "row_wise" or "column_wise" (recsys_models.sharding)."""

    epochs: int = 10
    batch_size: int = 1024
    eval_batch_size: int = 4096
    lr: float = 1e-3
    emb_lr: float = 0.05
    emb_optimizer: Literal["adagrad", "adam"] = "adagrad"
    embedding_dim: int = 16
    patience: int = 2
    weight_decay: float = 0.0
    max_hist: int = 50
    sharded: bool = False
    sharding: ShardingName = "auto"
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
