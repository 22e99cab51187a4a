"""The `[data]` slice of the suite config: frozen, typed dataclasses with defaults.

The lead's strict TOML loader (benchmark/config/suite.py) embeds `DataConfig` as the `[data]` table;
`qarm-bench data describe NAME --root PATH --split KIND` builds one from its flags.
Field types are limited to int, float, str, bool, Literal[str], tuple[...], nested frozen
dataclasses and `X | None`, so that loader can check every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from benchmark.core.errors import require

SplitKind = Literal["per_user_temporal", "global_temporal", "leave_last_out"]
# The built-in datasets: benchmark.data.registry has a loader for each, declared as an entry point of the group
# qarm_bench.datasets (a test checks the two agree); a plugin package adds its own the same way.
BUILTIN_DATASETS: tuple[str, ...] = (
    "movielens-100k", "movielens-1m", "movielens-latest", "movielens-latest-small", "movielens-20m", "movielens-25m",
    "movielens-32m", "amazon-reviews-2023", "microlens", "generic", "synthetic", "fashion-mnist-rec", "kuairand",
    "kuairec")


@dataclass(frozen=True)
class SplitConfig:
    """How impressions are split (docs/data.md).

    per_user_temporal (default): each user's impressions in time order; the last
      floor(n * test_frac) go to test and the floor(n * val_frac) before them to val.
    global_temporal: cut at the time quantiles 1 - val_frac - test_frac and 1 - test_frac; rows
      sharing a timestamp with the cut go to the later split.
    leave_last_out: each user's last impression to test, the one before to val.
    Cold-start items: a seeded `cold_item_frac` of the items with interactions; their rows are
    removed from train and val and kept in test.
    val_cold_item_frac: a second seeded draw, of that fraction of the items with interactions (among those not
      drawn for test), whose rows are removed from train and test and kept in validation: the validation
      rows' own cold items, on which a choice for cold items can be made (`qarm-bench select --slice cold`)
      without reading the test cold slice. 0 (the default) draws none; the test draw is the same either way.
      Stays out of the data key at 0 (benchmark/data/preparation.py LATER_FIELDS).
    seeds: split seeds as an outer loop of the suite (each draws its own split and cold items, its own data
    entry; every replicate seed runs within each); empty (the default) = the one split of `seed`. Stays out
    of the data key while empty (benchmark/data/preparation.py LATER_FIELDS).
    seed_pairing: "crossed" (the default: every replicate seed of suite.seeds runs under every split seed, S x R
      cells per variant and model) or "zipped" (split seed i runs replicate seed i only: suite.seeds and seeds
      of equal length, every replicate its own split, cold items and pipeline seeds). Either way the statistics
      take the split seed as their unit when there are several (benchmark/report/stats.py, "Units").
    """

    kind: SplitKind = "per_user_temporal"
    val_frac: float = 0.1
    test_frac: float = 0.1
    cold_item_frac: float = 0.1
    seed: int = 0
    popularity_buckets: int = 5
    seeds: tuple[int, ...] = ()
    seed_pairing: Literal["crossed", "zipped"] = "crossed"
    val_cold_item_frac: float = 0.0

    def __post_init__(self) -> None:
        for name in ("val_frac", "test_frac", "cold_item_frac", "val_cold_item_frac"):
            require(self, name, 0.0 <= getattr(self, name) < 1.0, "a fraction in [0, 1)")
        require(self, "test_frac", self.val_frac + self.test_frac < 1.0, "val_frac + test_frac < 1")
        require(self, "val_cold_item_frac", self.cold_item_frac + self.val_cold_item_frac < 1.0,
                "cold_item_frac + val_cold_item_frac < 1")
        require(self, "val_cold_item_frac", self.val_cold_item_frac == 0.0 or self.val_frac > 0.0,
                "0 when val_frac is 0 (its rows stay in validation only)")
        require(self, "popularity_buckets", self.popularity_buckets >= 1, "an integer >= 1")
        require(self, "seeds", len(set(self.seeds)) == len(self.seeds), "distinct split seeds (or [] for `seed`)")
        require(self, "seed_pairing", self.seed_pairing in ("crossed", "zipped"), "'crossed' or 'zipped'")


# (users, items, interactions, clusters) per synthetic preset; `large` is the scale benchmark.
SYNTHETIC_PRESETS: dict[str, tuple[int, int, int, int]] = {
    "tiny": (40, 30, 600, 3),
    "small": (2_000, 1_000, 50_000, 10),
    "medium": (50_000, 20_000, 1_000_000, 50),
    "large": (500_000, 1_000_000, 10_000_000, 200),
}


def synthetic_sizes(sc: SyntheticConfig) -> tuple[int, int, int, int]:
    """(n_users, n_items, n_interactions, n_clusters): the preset, with fields > 0 overriding."""
    base = SYNTHETIC_PRESETS[sc.size]
    given = (sc.n_users, sc.n_items, sc.n_interactions, sc.n_clusters)
    return tuple(v if v > 0 else b for v, b in zip(given, base))  # type: ignore[return-value]


@dataclass(frozen=True)
class SyntheticConfig:
    """Seeded generator with planted item clusters (benchmark/data/synthetic.py).

    `size` picks a preset (tiny: tests; large: 1M items / 10M interactions); any count set > 0
    overrides the preset's value. content: "planted" (an item's text names the cluster users prefer it by) or
    "null" (its text names a cluster drawn independently of that one: content carries no preference signal; the
    science test's null, tests/benchmark/test_science.py) or "confounded" (each theme word is, with probability
    1/2, a word of a nuisance topic drawn independently of the cluster, from a vocabulary of its own: the frozen
    encoder sees two topics of equal weight, and only the pairs say which one users prefer by; n_clusters <= 8). Stays out of the data key while "planted"
    (benchmark/data/preparation.py LATER_FIELDS).
    """

    size: Literal["tiny", "small", "medium", "large"] = "tiny"
    n_users: int = 0
    n_items: int = 0
    n_interactions: int = 0
    n_clusters: int = 0
    clusters_per_user: int = 2
    p_preferred: float = 0.8  # share of a user's impressions drawn from their preferred clusters
    p_pos_preferred: float = 0.7  # P(label = 1) for an item of a preferred cluster
    p_pos_other: float = 0.15  # P(label = 1) otherwise
    words_per_item: int = 8
    text_noise: float = 0.25  # share of an item's words drawn from the shared noise vocabulary
    images: bool = False  # render cluster-correlated PNGs (PIL) into the cache entry
    image_size: int = 32
    seed: int = 0
    chunk_users: int = 100_000  # users generated per chunk (bounds peak memory)
    content: Literal["planted", "null", "confounded"] = "planted"

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "n_interactions", "n_clusters", "words_per_item"):
            require(self, name, getattr(self, name) >= 0, "an integer >= 0 (0 = the preset's value)")
        for name in ("p_preferred", "p_pos_preferred", "p_pos_other", "text_noise"):
            require(self, name, 0.0 <= getattr(self, name) <= 1.0, "a probability in [0, 1]")
        require(self, "clusters_per_user", self.clusters_per_user >= 1, "an integer >= 1")
        require(self, "image_size", self.image_size >= 4, "an integer >= 4 (pixels)")
        require(self, "chunk_users", self.chunk_users >= 1, "an integer >= 1")
        users, items, inter, clusters = synthetic_sizes(self)
        require(self, "n_interactions", inter >= users, f"at least one per user (n_users = {users})")
        require(self, "content", self.content != "confounded" or 2 * clusters <= 16,
                f"'planted' or 'null' with n_clusters = {clusters}: 'confounded' needs n_clusters <= 8 (a nuisance "
                "theme of its own per cluster)")
        require(self, "clusters_per_user", self.clusters_per_user <= clusters <= items,
                f"clusters_per_user <= n_clusters ({clusters}) <= n_items ({items})")


@dataclass(frozen=True)
class GenericConfig:
    """Anyone's own data: csv or parquet (by extension) with a column mapping.

    Paths are relative to `DataConfig.root` unless absolute; `items` "" = no item file (the catalogue is the
    log's items, with no text). Labels: `label_col` (0/1) if set,
    else rating >= `DataConfig.label_threshold` if `rating_col` is set, else every row is positive.
    `ts_format` empty: the timestamp column holds integer seconds; otherwise a strptime format.
    """

    interactions: str = "interactions.csv"
    items: str = "items.csv"
    users: str = ""
    user_col: str = "user_id"
    item_col: str = "item_id"
    ts_col: str = "ts"
    rating_col: str = "rating"
    label_col: str = ""
    items_item_col: str = "item_id"
    text_cols: tuple[str, ...] = ("text",)
    image_col: str = ""
    category_col: str = ""
    users_user_col: str = "user_id"
    ts_format: str = ""


@dataclass(frozen=True)
class AmazonConfig:
    """Amazon Reviews 2023, one category: `<category>.jsonl[.gz]` + `meta_<category>.jsonl[.gz]`.

    `images_dir`: a folder of `<parent_asin>.{jpg,jpeg,png,webp}` the user downloaded (relative to
    root unless absolute; empty = `<root>/images` when it exists, else no images); set and missing is a
    DataError. Files PIL cannot decode are counted in a DataWarning and get a null image_path.
    """

    category: str = "All_Beauty"
    images_dir: str = ""


@dataclass(frozen=True)
class MicroLensConfig:
    """MicroLens (datasets/microlens/README.md): `<prefix>_pairs.csv` (user,item,timestamp) and the titles,
    `<prefix>_titles.csv` (MicroLens-50k: header item,title) or `<prefix>_title_en.csv` (MicroLens-100k:
    no header). ts_unit "auto": values >= 1e11 are milliseconds.

    covers_dir: the folder of `<item>.jpg` covers, relative to root unless absolute; "" = `<root>/covers`,
    else the release's own `<root>/<prefix>_covers`, whichever exists (neither: a DataWarning, every
    image_path null); set and missing is a DataError. Covers PIL cannot decode get a null image_path
    (counted in a DataWarning). Stays out of the data key while "" (benchmark/data/preparation.py
    LATER_FIELDS); the folder's listing is always in it."""

    prefix: str = "MicroLens-50k"
    ts_unit: Literal["auto", "s", "ms"] = "auto"
    covers_dir: str = ""


@dataclass(frozen=True)
class FashionMnistConfig:
    """fashion-mnist-rec: semi-synthetic interactions over real Fashion-MNIST pixels (benchmark/data/fashion_mnist.py,
    datasets/fashion-mnist-rec/README.md). Items: `n_items` images of the IDX `source` split, balanced over the 10
    classes; latent styles = class x a seeded k-means of the raw pixels within the class (`styles_per_class`);
    titles name the class with probability `title_class_p` and the style with `title_style_p`. Users like
    `styles_per_user` styles; a share `p_liked` of their impressions comes from those styles; ratings 1..5 from
    the style affinity (`like_boost`, `class_boost`), a per-item quality and noise (`rating_noise`)."""

    source: Literal["train", "t10k"] = "train"
    n_items: int = 2000
    n_users: int = 1500
    n_interactions: int = 45_000
    styles_per_class: int = 3
    styles_per_user: int = 2
    p_liked: float = 0.5
    title_class_p: float = 0.5
    title_style_p: float = 0.2
    like_boost: float = 2.0
    class_boost: float = 0.75
    rating_noise: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        require(self, "n_items", 10 <= self.n_items <= 60_000, "an integer in [10, 60000] (10 classes)")
        require(self, "n_users", self.n_users >= 1, "an integer >= 1")
        require(self, "n_interactions", self.n_interactions >= self.n_users, f"at least n_users ({self.n_users})")
        require(self, "styles_per_class", 1 <= self.styles_per_class <= 5, "an integer in [1, 5]")
        require(self, "styles_per_class", self.n_items >= 10 * self.styles_per_class,
                "at most n_items / 10 (each style needs an item)")
        require(self, "styles_per_user", 1 <= self.styles_per_user <= 10 * self.styles_per_class,
                f"an integer in [1, {10 * self.styles_per_class}] (10 classes x styles_per_class styles)")
        for name in ("p_liked", "title_class_p", "title_style_p"):
            require(self, name, 0.0 <= getattr(self, name) <= 1.0, "a probability in [0, 1]")
        for name in ("like_boost", "class_boost", "rating_noise"):
            require(self, name, getattr(self, name) >= 0.0, "a number >= 0")


@dataclass(frozen=True)
class KuaiRandConfig:
    """KuaiRand (Gao et al., CIKM 2022), one release: `variant` "pure" | "1k" | "27k" picks the file suffix
    (log_standard_4_08_to_4_21_<variant>.csv, ...; 27k's standard logs come in _part1/_part2). Every logged
    exposure is an impression; label = the `label` signal column (0/1). test_on_random: the random-exposure log
    log_random_4_22_to_5_08_<variant>.csv is the test split (an unbiased test set) and the standard logs are split
    into train and val by data.split with test_frac taken as 0; otherwise the random log is not read."""

    variant: Literal["pure", "1k", "27k"] = "pure"
    label: Literal["is_click", "long_view", "is_like", "is_follow", "is_comment", "is_forward"] = "is_click"
    test_on_random: bool = False


@dataclass(frozen=True)
class KuaiRecConfig:
    """KuaiRec 2.0 (Gao et al., CIKM 2022): `matrix` "big" (big_matrix.csv, 7,176 users x 10,728 videos, 13%
    dense) or "small" (small_matrix.csv, 1,411 x 3,327, fully observed); item text from
    kuairec_caption_category.csv. Label = watch_ratio >= `threshold`; 2.0 follows the KuaiRec README's example
    ("like = 1 if watch_ratio > 2.0"; >= here, one rule for every threshold)."""

    matrix: Literal["big", "small"] = "big"
    threshold: float = 2.0

    def __post_init__(self) -> None:
        require(self, "threshold", self.threshold > 0.0, "a watch ratio > 0")


@dataclass(frozen=True)
class NegativesConfig:
    """Sampled negatives for click-only logs (benchmark/data/negatives.py, docs/data.md "Sampled negatives").

    kind "none" (default): the log's own labels, nothing added. "uniform" / "popularity": for every positive
    impression, `ratio` distinct items the user had not interacted with up to that time, label 0, the positive's
    ts and history; drawn once when the data is prepared (seeded by `seed`, fixed in the cache entry). Training
    negatives come from the items with a training impression (so cold items stay out of train); val and test
    negatives from the whole catalogue, cold items included. "popularity" draws item i with probability
    proportional to (train_count_i + 1) ** exponent: 0.75 is word2vec's unigram^(3/4) (Mikolov et al. 2013); the
    + 1 keeps cold items (count 0) drawable in val and test.
    """

    kind: Literal["none", "uniform", "popularity"] = "none"
    ratio: int = 1
    seed: int = 0
    exponent: float = 0.75

    def __post_init__(self) -> None:
        require(self, "ratio", self.ratio >= 1, "an integer >= 1 (negatives per positive)")
        require(self, "exponent", self.exponent >= 0.0, "a number >= 0 (0 = uniform over the pool)")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, how it is labelled, filtered, split and cached.

    history_source: what a row's history holds — "positives": the user's latest history_len positives strictly
    before the impression (QARM §3, the default); "all_rows": the user's history_len rows just before it of ANY
    label, ties at one timestamp in item order (RecBole 1.2.1's sequential history, for peer parity).

    `root` empty = the dataset's default (ML-100K: the installed recbole wheel; fashion-mnist-rec: Debian's
    /usr/share/datasets/fashion-mnist; others: datasets/<card>/raw/). Duplicate (user, item, ts) rows are dropped with a warning (keep the first
    in file order) unless on_duplicate = "error"; interactions naming unknown items raise unless
    on_unknown_item = "drop". `negatives`: sampled label-0 rows for click-only logs (NegativesConfig; "none" by
    default; the microlens suite turns it on, since MicroLens has clicks only). kuairand, kuairec, negatives and
    microlens.covers_dir stay out of the data key while at their defaults (benchmark/data/preparation.py
    LATER_FIELDS), so adding them moved no existing key.
    """

    dataset: str = "movielens-100k"
    root: str = ""
    label_threshold: float = 4.0
    kcore: int = 0
    history_len: int = 50
    history_source: Literal["positives", "all_rows"] = "positives"
    verify_sha256: bool = True
    on_duplicate: Literal["error", "drop"] = "drop"
    on_unknown_item: Literal["error", "drop"] = "error"
    max_tags_per_item: int = 20
    split: SplitConfig = field(default_factory=SplitConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    generic: GenericConfig = field(default_factory=GenericConfig)
    amazon: AmazonConfig = field(default_factory=AmazonConfig)
    microlens: MicroLensConfig = field(default_factory=MicroLensConfig)
    fashion_mnist: FashionMnistConfig = field(default_factory=FashionMnistConfig)
    kuairand: KuaiRandConfig = field(default_factory=KuaiRandConfig)
    kuairec: KuaiRecConfig = field(default_factory=KuaiRecConfig)
    negatives: NegativesConfig = field(default_factory=NegativesConfig)
    cache_dir: str = ""

    def __post_init__(self) -> None:
        require(self, "history_len", self.history_len >= 0, "an integer >= 0")
        require(self, "kcore", self.kcore >= 0, "an integer >= 0")
        require(self, "max_tags_per_item", self.max_tags_per_item >= 0, "an integer >= 0")
