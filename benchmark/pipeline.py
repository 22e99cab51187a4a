"""The suite's stages as cached functions: data -> pairs -> frozen -> align -> codes -> rank cells.

Each stage computes its key from its config slice, its upstream keys and the package version
(`benchmark.config.slice_hash`), returns the finished entry from the StageCache when there is one,
and otherwise computes it inside `cache.writing(...)` so an interrupted run leaves nothing partial.
Library code (qarm, recsys_models) never logs; this module returns values and the suite logs them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmark import __version__
from benchmark.config import SuiteConfig, slice_hash
from benchmark.errors import ConfigError
from benchmark.stages import StageCache, read_json

CODE_SOURCES = ("frozen", "aligned")
QUANTIZERS = ("rq_kmeans", "rq_vae", "vq")


@dataclass(frozen=True)
class Stage:
    """A finished stage entry: its name, its key and its directory in the cache."""

    name: str
    key: str
    path: Path


# ---- keys --------------------------------------------------------------------------------------


def stage_keys(cfg: SuiteConfig, data_key: str) -> dict[str, str]:
    """Every item-side stage's key, from the config slices and the data fingerprint alone (no work done):
    `run` uses them to find finished stages, `plan` to report which are cached."""
    keys = {"data": data_key}
    keys["pairs"] = slice_hash(cfg.pairs, data_key, version=__version__)
    keys["frozen"] = slice_hash(cfg.encoder, data_key, version=__version__)
    keys["align"] = slice_hash(cfg.align, data_key, keys["pairs"], keys["frozen"], version=__version__)
    keys["codes"] = slice_hash(cfg.quantize, keys["frozen"], keys["align"], version=__version__)
    return keys


# ---- data --------------------------------------------------------------------------------------


def run_data(cfg: SuiteConfig, cache: StageCache) -> tuple[Any, Stage]:
    """Load, label, split and build histories (benchmark.data.prepare caches by raw-file fingerprint)."""
    from benchmark.data import prepare

    data_dir = cache.root / "data"
    force = "data" in cache.forced
    prepared = prepare(cfg.data, cache_dir=data_dir, force=force)
    return prepared, Stage("data", prepared.fingerprint, data_dir)


# ---- pairs -------------------------------------------------------------------------------------


def run_pairs(cfg: SuiteConfig, cache: StageCache, prepared: Any, key: str) -> tuple[pl.DataFrame, dict, Stage]:
    from qarm.pairs import SwingConfig, U2IConfig, mine_pairs

    p = cfg.pairs
    if not cache.done("pairs", key):
        u2i = U2IConfig(dim=p.u2i_dim, epochs=p.u2i_epochs, batch_size=p.u2i_batch_size, lr=p.u2i_lr,
                        temperature=p.u2i_temperature, window=p.window)
        swing = SwingConfig(alpha=p.swing_alpha, top_k=p.swing_top_k, min_support=p.swing_min_support)
        pairs, stats = mine_pairs(prepared.train_positives(), prepared.n_items, sources=p.sources, u2i=u2i,
                                  swing=swing, seed=cfg.data.split.seed)
        with cache.writing("pairs", key) as d:
            pairs.write_parquet(d / "pairs.parquet")
            (d / "stats.json").write_text(json.dumps(stats, default=float))
    d = cache.path("pairs", key)
    return pl.read_parquet(d / "pairs.parquet"), read_json(d / "stats.json"), Stage("pairs", key, d)


# ---- frozen embeddings -------------------------------------------------------------------------


def run_frozen(cfg: SuiteConfig, cache: StageCache, prepared: Any, key: str) -> tuple[Any, Stage]:
    """Frozen per-modality item features (qarm.encoders.ItemFeatures) of ALL items, cold ones included."""
    from qarm.encoders import ItemFeatures, TextEncoder, item_features

    e = cfg.encoder
    if not cache.done("frozen", key):
        texts = prepared.items["text"].to_list() if "text" in e.modalities else None
        paths = None
        if "image" in e.modalities:
            from qarm.encoders import ImageEncoder

            paths = prepared.items["image_path"].to_list() if "image_path" in prepared.items.columns else None
            if not paths or not any(paths):
                raise ConfigError(f"encoder.modalities includes 'image' but dataset {cfg.data.dataset!r} has no "
                                  "image paths (items.image_path is empty)")
        enc = TextEncoder(e.text_model or None, max_length=e.max_length, batch_size=e.batch_size) if texts else None
        img = ImageEncoder(e.image_model or None) if paths else None
        feats = item_features(texts, paths, text_encoder=enc, image_encoder=img, progress=True)
        with cache.writing("frozen", key, {"text_model": e.text_model or "all-MiniLM-L6-v2"}) as d:
            for m in feats.features:
                np.save(d / f"features_{m}.npy", feats.features[m].astype(np.float32))
                np.save(d / f"present_{m}.npy", feats.present[m])
    d = cache.path("frozen", key)
    mods = sorted(p.stem.removeprefix("features_") for p in d.glob("features_*.npy"))
    feats = ItemFeatures({m: np.load(d / f"features_{m}.npy") for m in mods},
                         {m: np.load(d / f"present_{m}.npy") for m in mods})
    return feats, Stage("frozen", key, d)


# ---- alignment ---------------------------------------------------------------------------------


def run_align(cfg: SuiteConfig, cache: StageCache, prepared: Any, pairs: pl.DataFrame, frozen: Any,
              key: str) -> tuple[np.ndarray, dict, Stage]:
    """Aligned embeddings (N, d) of ALL items + a summary (recall@k frozen vs aligned, per-epoch history).

    trainable_layers 0 trains the fusion/projection head over the cached frozen features (the CPU default);
    k > 0 or -1 (all) re-encodes the texts and fine-tunes the top transformer layers too."""
    from qarm.alignment import AlignConfig as QAlignConfig
    from qarm.alignment import align
    from qarm.encoders import TextEncoder

    a = cfg.align
    if not cache.done("align", key):
        layers: int | str = "all" if a.trainable_layers == -1 else a.trainable_layers
        qcfg = QAlignConfig(d=a.dim, temperature=a.temperature, batch_size=a.batch_size, epochs=a.epochs, lr=a.lr,
                            encoder_lr=a.encoder_lr, weight_decay=a.weight_decay, warmup_ratio=a.warmup_frac,
                            trainable_layers=layers, hidden=a.hidden, val_fraction=a.val_frac,
                            recall_k=a.recall_k, patience=a.patience, seed=cfg.data.split.seed)
        if layers == 0:
            result = align(pairs, features=frozen, config=qcfg, progress=True)
        else:
            e = cfg.encoder
            enc = TextEncoder(e.text_model or None, max_length=e.max_length, batch_size=e.batch_size)
            result = align(pairs, texts=prepared.items["text"].to_list(), text_encoder=enc, config=qcfg,
                           progress=True)
        summary = {"frozen_recall": result.frozen_recall_at_k, "aligned_recall": result.aligned_recall_at_k,
                   "best_epoch": result.best_epoch, "history": result.history}
        with cache.writing("align", key) as d:
            result.save(d / "model")
            np.save(d / "embeddings.npy", result.embeddings.astype(np.float32))
            (d / "summary.json").write_text(json.dumps(summary, default=float))
    d = cache.path("align", key)
    return np.load(d / "embeddings.npy"), read_json(d / "summary.json"), Stage("align", key, d)


# ---- codes -------------------------------------------------------------------------------------


def _fit_codes(cfg: SuiteConfig, x: np.ndarray, quantizer: str, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(codes, codebooks or None) of one quantizer on embeddings x: (N, d)."""
    from qarm.quantize import RQKmeans, fit_rq_vae, vq_codes
    from qarm.quantize import RQVAEConfig as QRQVAEConfig

    q = cfg.quantize
    n = x.shape[0]
    k = min(q.codebook_size, n)
    if quantizer == "rq_kmeans":
        model = RQKmeans(levels=q.levels, codebook_size=k, niter=q.niter, seed=seed).fit(x)
        return model.encode(x), model.codebooks
    if quantizer == "rq_vae":
        v = q.rq_vae
        model = fit_rq_vae(x, QRQVAEConfig(levels=q.levels, codebook_size=k, hidden_dims=v.hidden,
                                           latent_dim=v.latent_dim, epochs=v.epochs, batch_size=v.batch_size,
                                           lr=v.lr, beta=v.beta), seed=seed)
        return model.encode(x), None
    return vq_codes(x, k=min(q.vq_k, n - 1)), None


def run_codes(cfg: SuiteConfig, cache: StageCache, embeddings: dict[str, np.ndarray],
              key: str) -> tuple[dict[str, np.ndarray], dict[str, dict], Stage]:
    """Codes of every (source, quantizer) pair plus their diagnostics: frozen_rq_kmeans, aligned_vq, ..."""
    from qarm.diagnostics import code_diagnostics
    from qarm.quantize import add_dedup_level

    q = cfg.quantize
    if not cache.done("codes", key):
        codes: dict[str, np.ndarray] = {}
        diags: dict[str, dict] = {}
        for source in CODE_SOURCES:
            x = embeddings[source]
            for quantizer in QUANTIZERS:
                c, books = _fit_codes(cfg, x, quantizer, seed=cfg.data.split.seed)
                if q.dedup and quantizer != "vq":
                    c = add_dedup_level(c)
                    books = None
                name = f"{source}_{quantizer}"
                codes[name] = c.astype(np.int64)
                if quantizer == "vq":
                    diags[name] = {"k": int(c.shape[1]), "distinct_neighbours": int(np.unique(c).size)}
                else:
                    diags[name] = code_diagnostics(x, c, codebook_size=int(c.max()) + 1 if q.dedup else
                                                   min(q.codebook_size, x.shape[0]), codebooks=books)
        with cache.writing("codes", key) as d:
            for name, c in codes.items():
                np.save(d / f"{name}.npy", c)
            (d / "diagnostics.json").write_text(json.dumps(diags, default=float))
    d = cache.path("codes", key)
    codes = {p.stem: np.load(p) for p in sorted(d.glob("*.npy"))}
    return codes, read_json(d / "diagnostics.json"), Stage("codes", key, d)


def variant_arrays(cfg: SuiteConfig, variant: str, codes: dict[str, np.ndarray],
                   embeddings: dict[str, np.ndarray]) -> dict[str, np.ndarray | None]:
    """The item-side arrays a variant reads: RQ codes of the configured quantizer, VQ codes, dense vectors."""
    from benchmark.variants import get_variant

    v = get_variant(variant)
    src = v.content_source or "aligned"
    return {
        "codes": codes[f"{src}_{cfg.quantize.quantizer}"] if v.codes else None,
        "vq_codes": codes[f"{src}_vq"] if v.vq else None,
        "dense": embeddings[src] if v.dense else None,
    }


def code_vocab(cfg: SuiteConfig, codes: np.ndarray, n_items: int) -> int:
    """Rows of each RQ-code table: the configured K (stable across seeds), N for VQ codes used as the code
    feature, and the largest code + 1 when a dedup level was added (its suffix can exceed K)."""
    if cfg.quantize.quantizer == "vq":
        return n_items
    k = min(cfg.quantize.codebook_size, n_items)
    return max(k, int(codes.max()) + 1) if cfg.quantize.dedup else k


def cell_key(cfg: SuiteConfig, variant: str, model: str, seed: int, keys: dict[str, str]) -> str:
    """A cell's key covers only what its variant reads, so an ablation of the quantizer or the alignment
    reuses the id_only cells (and a codes ablation reuses the dense ones)."""
    from benchmark.variants import get_variant

    v = get_variant(variant)
    upstream = [keys["data"]]
    if v.content_source is not None:
        upstream.append(keys[v.content_source if v.content_source == "frozen" else "align"])
    uses_codes = v.codes or v.vq
    if uses_codes:
        upstream.append(keys["codes"])
    slice_ = {"rank": cfg.rank, "variant": variant, "model": model, "seed": seed,
              "quantizer": cfg.quantize.quantizer if uses_codes else None}
    return slice_hash(slice_, *upstream, version=__version__)


def cell_params(cfg: SuiteConfig, variant: str, model: str, seed: int) -> dict[str, Any]:
    from benchmark.configlib import flatten

    return {"variant": variant, "model": model, "seed": seed, "quantizer": cfg.quantize.quantizer,
            **flatten(cfg.rank, "rank")}

