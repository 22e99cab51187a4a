"""Settings of the pairs stage (QARM §3 pair sources, mined on the TRAIN split only). Imports no torch.

    [pairs]          sources
    [pairs.u2i]      U2IConfig: the two-tower retrieval model and the trigger window
    [pairs.swing]    SwingConfig: the Swing I2I model

The flat keys of earlier suite files (`pairs.u2i_dim`, `pairs.swing_min_support`, `pairs.window`, ...)
still load: `PairsConfig.CONFIG_ALIASES` maps each to its home in the nested tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from qarm.errors import require

PairSource = Literal["u2i", "i2i"]
U2IOptimizer = Literal["adam", "sparse_adam"]


@dataclass(frozen=True)
class U2IConfig:
    """dim: tower width; epochs, batch_size, lr, temperature: training of the in-batch softmax;
    window: how many latest positives form the history the trigger is chosen from (QARM: 50).

    optimizer: "adam" (dense Adam on every parameter: each step touches both item tables whole, so an epoch
    costs steps x items, quadratic in the data) or "sparse_adam" (the item tables get sparse gradients and
    torch's SparseAdam, which updates only the rows a batch touched, the lazy Adam of large-scale embedding
    training; the user projection keeps Adam): linear in the data; one process only.
    max_pairs_per_item: 0 = every U2I pair mined; m > 0 keeps a pair when it is among the m pairs of highest
    weight (the number of positives that mined it; ties to the lower other item) of either of its items, as
    Swing keeps each item's top_k: at most m x items pairs, so the pairs grow with the items and not with the
    positives per item. Every positive still picks its one trigger by QARM's rule; only repeats are capped."""

    dim: int = 64
    epochs: int = 5
    batch_size: int = 512
    lr: float = 0.005
    temperature: float = 0.1
    window: int = 50  # QARM §3: trigger among the user's latest 50 positives
    optimizer: U2IOptimizer = "adam"
    max_pairs_per_item: int = 0

    def __post_init__(self) -> None:
        for name in ("dim", "batch_size", "window"):
            require(self, name, getattr(self, name) >= 1, "an integer >= 1")
        require(self, "batch_size", self.batch_size >= 2, "an integer >= 2 (in-batch negatives need a pair)")
        require(self, "epochs", self.epochs >= 0, "an integer >= 0")
        require(self, "lr", self.lr > 0, "a number > 0")
        require(self, "temperature", self.temperature > 0, "a number > 0")
        require(self, "optimizer", self.optimizer in ("adam", "sparse_adam"), "'adam' or 'sparse_adam'")
        require(self, "max_pairs_per_item", self.max_pairs_per_item >= 0, "an integer >= 0 (0 = no cap)")


@dataclass(frozen=True)
class SwingConfig:
    """alpha: smoothing in 1 / (alpha + overlap); top_k: neighbours kept per item; min_support: least
    number of common users for a pair; max_users_per_item: cap on U_i (a seeded sample) for speed;
    user_weight_power: exponent of the user weight |I_u| ** -p (0 = plain Swing); max_user_degree: users with
    more distinct TRAIN positives than this are left out of Swing altogether (skipped, not subsampled: the
    practice of Alibaba's open Swing implementations, Flink ML `maxUserBehavior` = 1000, PAI `maxClickPerUser`;
    such accounts are mostly crawlers or bulk buyers, and a user of degree D costs D^2 co-occurrences). The
    default 1000 changes nothing on MovieLens-100K (its most active user has 737 ratings)."""

    alpha: float = 1.0
    top_k: int = 10
    min_support: int = 2
    max_users_per_item: int = 300
    user_weight_power: float = 0.0
    max_user_degree: int = 1000

    def __post_init__(self) -> None:
        require(self, "alpha", self.alpha >= 0, "a number >= 0")
        require(self, "top_k", self.top_k >= 1, "an integer >= 1")
        require(self, "min_support", self.min_support >= 2, "an integer >= 2 (Swing needs a pair of users)")
        require(self, "max_users_per_item", self.max_users_per_item >= 2, "an integer >= 2")
        require(self, "user_weight_power", self.user_weight_power >= 0, "a number >= 0")
        require(self, "max_user_degree", self.max_user_degree >= 2,
                "an integer >= 2 (users with more distinct positives are skipped by Swing)")


@dataclass(frozen=True)
class PairsConfig:
    """Which pair sources feed alignment, and each source's model."""

    sources: tuple[PairSource, ...] = ("u2i", "i2i")
    u2i: U2IConfig = field(default_factory=U2IConfig)
    swing: SwingConfig = field(default_factory=SwingConfig)

    # Settings added after stage keys were recorded: out of the pairs key while at their defaults
    # (benchmark/itemside/stages.py), so adding them moved no key.
    LATER_FIELDS: ClassVar[tuple[str, ...]] = ("u2i.optimizer", "u2i.max_pairs_per_item")

    CONFIG_ALIASES: ClassVar[dict[str, str]] = {
        "window": "u2i.window", "u2i_dim": "u2i.dim", "u2i_epochs": "u2i.epochs",
        "u2i_batch_size": "u2i.batch_size", "u2i_lr": "u2i.lr", "u2i_temperature": "u2i.temperature",
        "swing_alpha": "swing.alpha", "swing_top_k": "swing.top_k", "swing_min_support": "swing.min_support",
    }

    def __post_init__(self) -> None:
        require(self, "sources", bool(self.sources) and len(set(self.sources)) == len(self.sources),
                "a non-empty list of distinct sources from 'u2i', 'i2i'")
