"""Seeded synthetic data with planted item clusters, generated in vectorised chunks (numpy).

Model: item i belongs to cluster c(i) (balanced, shuffled) and has a log-normal popularity.
Each user prefers `clusters_per_user` clusters; an impression comes from a preferred cluster with
probability p_preferred, otherwise from a uniform cluster, and the item within the cluster is
drawn by popularity. P(label = 1) is p_pos_preferred for items of a preferred cluster and
p_pos_other otherwise. Item text = words of the cluster's theme(s) plus noise words, so a
text encoder sees the clusters; `category` = "cluster-<c>" exposes the truth for tests of alignment.
content = "null": the text names a cluster drawn independently of the item's (a seeded permutation of the
cluster labels over the items, from a generator of its own so the interactions are those of "planted"): the
content carries no signal about who likes the item, the science test's null. content = "confounded": each
theme word is, with probability 1/2, a word of a nuisance theme (themes n_clusters..2 n_clusters - 1, one per
item drawn independently of its cluster, again from a generator of its own): the text carries the preferred
cluster and an equally strong topic nobody prefers by. Images follow `category`.
Optional images: a PNG per item whose colour and shape depend on the cluster (PIL).
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import polars as pl

from benchmark.config.data import SYNTHETIC_PRESETS as PRESETS  # noqa: F401 (re-export)
from benchmark.config.data import SyntheticConfig, synthetic_sizes
from benchmark.data.schema import RawData

THEMES: tuple[tuple[str, ...], ...] = (
    ("football", "goal", "stadium", "league", "coach", "match", "striker", "referee"),
    ("guitar", "concert", "melody", "album", "drummer", "chorus", "band", "song"),
    ("recipe", "kitchen", "bake", "flavour", "spice", "oven", "dessert", "chef"),
    ("galaxy", "planet", "rocket", "orbit", "astronaut", "telescope", "comet", "star"),
    ("puppy", "kitten", "pet", "leash", "veterinarian", "paw", "treat", "fur"),
    ("laptop", "software", "keyboard", "processor", "code", "debug", "server", "pixel"),
    ("mountain", "hiking", "trail", "summit", "camping", "tent", "backpack", "forest"),
    ("lipstick", "makeup", "skincare", "mascara", "perfume", "serum", "blush", "lotion"),
    ("detective", "murder", "clue", "suspect", "crime", "mystery", "alibi", "witness"),
    ("castle", "dragon", "wizard", "quest", "sword", "kingdom", "knight", "spell"),
    ("stock", "market", "investor", "dividend", "bank", "trading", "profit", "bond"),
    ("garden", "flower", "seed", "soil", "tulip", "greenhouse", "compost", "bloom"),
    ("car", "engine", "racing", "tyre", "driver", "motor", "speed", "garage"),
    ("baby", "toddler", "nursery", "stroller", "diaper", "crib", "toy", "lullaby"),
    ("ocean", "surf", "beach", "wave", "sailing", "coral", "island", "tide"),
    ("history", "empire", "ancient", "war", "museum", "archive", "dynasty", "ruins"),
)
NOISE: tuple[str, ...] = (
    "new", "great", "best", "edition", "classic", "original", "collection", "series", "official",
    "premium", "deluxe", "special", "value", "pack", "set", "daily", "pro", "mini", "plus", "ultra",
    "essential", "simple", "modern", "vintage", "limited", "popular", "top", "quality", "favourite", "smart",
)
T0 = 1_600_000_000  # 2020-09-13: synthetic timestamps start here


sizes = synthetic_sizes  # (n_users, n_items, n_interactions, n_clusters); checked by SyntheticConfig


def cluster_words(c: int) -> tuple[str, ...]:
    """Theme words of cluster c: one theme (c < 16), then pairs of themes, then a pair plus a code word."""
    pairs = list(combinations(range(len(THEMES)), 2))
    if c < len(THEMES):
        return THEMES[c]
    a, b = pairs[(c - len(THEMES)) % len(pairs)]
    words = THEMES[a][:4] + THEMES[b][:4]
    return words if c < len(THEMES) + len(pairs) else (*words, f"line{c}")


def _items(sc: SyntheticConfig, rng: np.random.Generator, n_items: int, n_clusters: int):
    cluster = rng.permutation(np.arange(n_items) % n_clusters)
    pop = rng.lognormal(0.0, 1.0, n_items)
    width = 9
    vocab = list(NOISE)
    table = np.empty((n_clusters, width), dtype=np.int64)
    for c in range(n_clusters):
        words = cluster_words(c)
        table[c] = [len(vocab) + (j % len(words)) for j in range(width)]
        vocab.extend(words)
    k = sc.words_per_item
    aux = np.random.default_rng([sc.seed, 1])  # the content options' draws leave the main stream untouched
    named = aux.permutation(cluster) if sc.content == "null" else cluster
    word_pos = rng.integers(0, width, (n_items, k))
    word_idx = table[named[:, None], word_pos]
    if sc.content == "confounded":
        nuisance_table = np.empty_like(table)
        for c in range(n_clusters):
            words = cluster_words(n_clusters + c)
            nuisance_table[c] = [len(vocab) + (j % len(words)) for j in range(width)]
            vocab.extend(words)
        nuisance = aux.permutation(cluster)
        swap = aux.random((n_items, k)) < 0.5
        word_idx = np.where(swap, nuisance_table[nuisance[:, None], word_pos], word_idx)
    noisy = rng.random((n_items, k)) < sc.text_noise
    word_idx[noisy] = rng.integers(0, len(NOISE), int(noisy.sum()))
    v = pl.Series(vocab)
    text = pl.concat_str([v.gather(word_idx[:, j]) for j in range(k)], separator=" ") if k else pl.lit("")
    items = pl.DataFrame({"item_id": pl.Series(np.arange(n_items)).cast(pl.Utf8)}).with_columns(
        text.alias("text") if k else pl.lit("").alias("text"),
        (pl.lit("cluster-") + pl.Series(cluster).cast(pl.Utf8)).alias("category"))
    return items, cluster, pop


def _sampler(cluster: np.ndarray, pop: np.ndarray, n_clusters: int):
    """Draw items of given clusters by popularity: one searchsorted over c + within-cluster CDF."""
    order = np.lexsort((np.arange(cluster.size), cluster))
    cl = cluster[order]
    w = pop[order]
    csum = np.cumsum(w)
    starts = np.searchsorted(cl, np.arange(n_clusters))
    ends = np.searchsorted(cl, np.arange(n_clusters), side="right")
    before = np.where(starts > 0, csum[np.maximum(starts - 1, 0)], 0.0)
    total = csum[ends - 1] - before
    cdf = cl + (csum - before[cl]) / total[cl]

    def draw(c: np.ndarray, u: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(cdf, c + u, side="right")
        return order[np.minimum(pos, ends[c] - 1)]

    return draw


def _chunk(sc, rng, users: np.ndarray, counts: np.ndarray, n_clusters, draw, cluster) -> pl.DataFrame:
    m = sc.clusters_per_user
    prefs = np.argpartition(rng.random((users.size, n_clusters)), m - 1, axis=1)[:, :m]
    local = np.repeat(np.arange(users.size), counts)
    k = local.size
    pick = prefs[local, rng.integers(0, m, k)]
    c = np.where(rng.random(k) < sc.p_preferred, pick, rng.integers(0, n_clusters, k))
    item = draw(c, rng.random(k))
    in_pref = (prefs[local] == cluster[item][:, None]).any(axis=1)
    label = rng.random(k) < np.where(in_pref, sc.p_pos_preferred, sc.p_pos_other)
    # Per-user increasing timestamps: a start in the first year, then gaps of >= 1 s (mean ~6 h).
    gaps = 1 + rng.exponential(6 * 3600.0, k).astype(np.int64)
    csum = np.cumsum(gaps)
    seg_start = np.cumsum(counts) - counts
    offset = np.where(seg_start > 0, csum[np.maximum(seg_start - 1, 0)], 0)
    ts = T0 + rng.integers(0, 365 * 86400, users.size)[local] + csum - offset[local]
    return pl.DataFrame({"user_id": pl.Series(users[local]).cast(pl.Utf8), "item_id": pl.Series(item).cast(pl.Utf8),
                         "ts": ts.astype(np.int64), "label": label.astype(np.int8)})


def generate(sc: SyntheticConfig) -> RawData:
    """Interactions and items (no images; see `render_images`)."""
    n_users, n_items, n_inter, n_clusters = sizes(sc)
    rng = np.random.default_rng(sc.seed)
    items, cluster, pop = _items(sc, rng, n_items, n_clusters)
    draw = _sampler(cluster, pop, n_clusters)
    activity = rng.lognormal(0.0, 0.8, n_users)
    counts = 1 + rng.multinomial(n_inter - n_users, activity / activity.sum())
    chunks = []
    step = max(1, sc.chunk_users)
    for a in range(0, n_users, step):
        b = min(n_users, a + step)
        chunks.append(_chunk(sc, rng, np.arange(a, b), counts[a:b], n_clusters, draw, cluster))
    inter = pl.concat(chunks, rechunk=True)
    return RawData(inter, items, None, f"synthetic[{sc.size}, seed={sc.seed}]")


def _shape(d, kind: int, box: tuple[int, int, int, int], fill: tuple[int, ...]) -> None:
    """Cluster-dependent shape: 0 ellipse, 1 rectangle, 2 triangle."""
    if kind == 0:
        d.ellipse(box, fill=fill)
    elif kind == 1:
        d.rectangle(box, fill=fill)
    else:
        d.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], fill=fill)


def render_images(items: pl.DataFrame, sc: SyntheticConfig, write_dir: Path, final_dir: Path) -> pl.DataFrame:
    """One PNG per item: background hue and shape from the cluster, position and shade jittered.
    Files go to write_dir (a temp folder); image_path names final_dir (where it is renamed to)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(sc.seed + 1)
    write_dir.mkdir(parents=True, exist_ok=True)
    s = sc.image_size
    clusters = items["category"].str.replace("cluster-", "").cast(pl.Int64).to_numpy()
    n_clusters = int(clusters.max()) + 1
    paths = []
    for item_id, c in zip(items["item_id"], clusters):
        hue = int(255 * c / n_clusters)
        img = Image.new("HSV", (s, s), (hue, 160, int(rng.integers(150, 256)))).convert("RGB")
        d = ImageDraw.Draw(img)
        x, y = rng.integers(0, s // 4, 2)
        box = (int(x), int(y), int(x) + s // 2, int(y) + s // 2)
        fill = tuple(int(v) for v in rng.integers(0, 80, 3))
        _shape(d, int(c) % 3, box, fill)
        img.save(write_dir / f"{item_id}.png")
        paths.append(str(final_dir / f"{item_id}.png"))
    return items.with_columns(pl.Series("image_path", paths, dtype=pl.Utf8))
