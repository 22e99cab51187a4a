"""What each item-side stage computes, saves and loads: the functions the stage table (benchmark.stages) names.

    data    PreparedData      benchmark.data: load, validate, split, histories
    pairs   MinedPairs        qarm.pairs.mine_pairs on the TRAIN positives (U2I + Swing)
    frozen  ItemFeatures      qarm.encoders: frozen per-modality features of ALL items
    align   Aligned           qarm.alignment.align: aligned embeddings (N, d) + AlignSummary
    codes   CodeSet           qarm.quantize: one code set (source x quantizer) + its diagnostics

Each compute function receives a StageContext (the suite config, the replicate seed, the upstream artifacts,
the entry folder being written); library code never logs, the suite logs what these return. Each computes on
`suite.device` (`_device`); faiss k-means and top-k search use the GPU when faiss sees one, unless the suite
says "cpu".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmark.config import SuiteConfig
from benchmark.errors import ConfigError
from benchmark.records import from_json, to_json

CODE_SOURCES = ("frozen", "aligned")
QUANTIZERS = ("rq_kmeans", "rq_vae", "vq")


@dataclass(frozen=True)
class StageContext:
    """cfg: the suite config; seed: the replicate seed (seeded stages); inputs: upstream artifacts by stage
    name; workdir: the cache entry being written (for side files); final_dir: where it will live."""

    cfg: SuiteConfig
    seed: int
    inputs: dict[str, Any]
    workdir: Path
    final_dir: Path
    progress: bool = True


def _device(ctx: StageContext) -> Any:
    """The torch.device of `suite.device` (this rank's GPU under torchrun)."""
    from benchmark.device import resolve_device

    return resolve_device(ctx.cfg.suite.device)


def _faiss_gpu(ctx: StageContext) -> bool | str:
    """faiss's GPU choice: "auto" (its GPU when it sees one) unless the suite runs on the CPU."""
    return False if _device(ctx).type == "cpu" else "auto"


# ---- data ----------------------------------------------------------------------------------------


def compute_data(ctx: StageContext) -> Any:
    from benchmark.data.preparation import compute_prepared

    return compute_prepared(ctx.cfg.data, ctx.workdir, ctx.final_dir)


def save_data(data: Any, out: Path) -> None:
    from benchmark.data.prepared import save_prepared

    save_prepared(data, out)


def load_data(path: Path) -> Any:
    from benchmark.data.prepared import load_prepared

    return load_prepared(path)


def describe_data(data: Any) -> str:
    s = data.stats
    return (f"{data.name}: {s.get('users')} users, {s.get('items')} items, train/val/test "
            f"{s.get('train')}/{s.get('val')}/{s.get('test')}")


# ---- pairs ---------------------------------------------------------------------------------------


def compute_pairs(ctx: StageContext) -> Any:
    from qarm.pairs import mine_pairs

    prepared = ctx.inputs["data"]
    return mine_pairs(prepared.train_positives(), prepared.n_items, ctx.cfg.pairs, seed=ctx.seed,
                      device=str(_device(ctx)))


def save_pairs(mined: Any, out: Path) -> None:
    mined.pairs.write_parquet(out / "pairs.parquet")
    (out / "stats.json").write_text(json.dumps(to_json(mined.stats)))
    if mined.u2i_item_embeddings is not None:
        np.save(out / "u2i_item_embeddings.npy", mined.u2i_item_embeddings.astype(np.float32))


def load_pairs(path: Path) -> Any:
    from qarm.pairs.records import MinedPairs, PairStats

    emb = path / "u2i_item_embeddings.npy"
    stats = from_json(PairStats, json.loads((path / "stats.json").read_text()), path / "stats.json")
    return MinedPairs(pl.read_parquet(path / "pairs.parquet"), stats, np.load(emb) if emb.exists() else None)


def describe_pairs(mined: Any) -> str:
    return f"{mined.stats.n_pairs} pairs {mined.stats.pairs_per_source}"


# ---- frozen embeddings ---------------------------------------------------------------------------


def compute_frozen(ctx: StageContext) -> Any:
    """Frozen per-modality item features (qarm.encoders.ItemFeatures) of ALL items, cold ones included."""
    from qarm.encoders import TextEncoder, item_features

    e, prepared, device = ctx.cfg.encoder, ctx.inputs["data"], str(_device(ctx))
    texts = prepared.items["text"].to_list() if "text" in e.modalities else None
    paths, img = None, None
    if "image" in e.modalities:
        from qarm.encoders import ImageEncoder

        paths = prepared.items["image_path"].to_list() if "image_path" in prepared.items.columns else None
        if not paths or not any(paths):
            raise ConfigError(f"encoder.modalities includes 'image' but dataset {ctx.cfg.data.dataset!r} has no "
                              "image paths (items.image_path is empty)")
        img = ImageEncoder(e.image_model or None, device=device)
    enc = (TextEncoder(e.text_model or None, max_length=e.max_length, batch_size=e.batch_size, device=device)
           if texts else None)
    return item_features(texts, paths, text_encoder=enc, image_encoder=img, progress=ctx.progress)


def save_frozen(feats: Any, out: Path) -> None:
    for m in feats.features:
        np.save(out / f"features_{m}.npy", feats.features[m].astype(np.float32))
        np.save(out / f"present_{m}.npy", feats.present[m])


def load_frozen(path: Path) -> Any:
    from qarm.encoders import ItemFeatures

    mods = sorted(p.stem.removeprefix("features_") for p in path.glob("features_*.npy"))
    return ItemFeatures({m: np.load(path / f"features_{m}.npy") for m in mods},
                        {m: np.load(path / f"present_{m}.npy") for m in mods})


def describe_frozen(feats: Any) -> str:
    return f"embeddings {feats.frozen_embeddings().shape} ({', '.join(f'{m} {d}' for m, d in feats.dims.items())})"


# ---- alignment -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Aligned:
    """embeddings: (N, d) float32 aligned embeddings of ALL items; summary: qarm AlignSummary."""

    embeddings: np.ndarray
    summary: Any


def compute_align(ctx: StageContext) -> Any:
    """trainable_layers 0 trains the fusion/projection head over the cached frozen features; k > 0 or "all"
    re-encodes the texts and fine-tunes the top transformer blocks too."""
    from benchmark import distributed
    from qarm.alignment import align
    from qarm.encoders import TextEncoder

    a, pairs = ctx.cfg.align, ctx.inputs["pairs"].pairs
    run = {"config": a, "seed": ctx.seed, "progress": ctx.progress, "device": _device(ctx),
           "distributed": distributed.active()}  # under torchrun every rank trains (DDP)
    if a.layers == 0:
        return align(pairs, features=ctx.inputs["frozen"], **run)
    e = ctx.cfg.encoder
    enc = TextEncoder(e.text_model or None, max_length=e.max_length, batch_size=e.batch_size,
                      device=str(run["device"]))
    texts = ctx.inputs["data"].items["text"].to_list()
    return align(pairs, texts=texts, text_encoder=enc, **run)


def save_align(result: Any, out: Path) -> None:
    result.save(out / "model")
    np.save(out / "embeddings.npy", result.embeddings.astype(np.float32))
    (out / "summary.json").write_text(json.dumps(to_json(result.summary)))


def load_align(path: Path) -> Aligned:
    from qarm.alignment import AlignSummary

    summary = from_json(AlignSummary, json.loads((path / "summary.json").read_text()), path / "summary.json")
    return Aligned(np.load(path / "embeddings.npy"), summary)


def describe_align(result: Any) -> str:
    s = result.summary
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    return (f"embeddings {result.embeddings.shape}; held-out pair recall@{s.k}: frozen {fmt(s.frozen_recall)} "
            f"-> aligned {fmt(s.aligned_recall)}")


# ---- codes ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CodeSet:
    """One code set: name "<source>_<quantizer>", kind "rq" (codes (N, L) int64 in [0, vocab)) or "vq"
    (codes (N, k) int64 item_idx, vocab N), and its diagnostics (CodeDiagnostics, or {k, distinct_neighbours})."""

    name: str
    kind: str
    codes: np.ndarray
    vocab: int
    diagnostics: Any


def code_set_name(source: str, quantizer: str) -> str:
    return f"{source}_{quantizer}"


def parse_code_set(name: str) -> tuple[str, str]:
    """"aligned_rq_kmeans" -> ("aligned", "rq_kmeans")."""
    source, _, quantizer = name.partition("_")
    if source not in CODE_SOURCES or quantizer not in QUANTIZERS:
        raise ValueError(f"not a code set name: {name!r}")
    return source, quantizer


def code_slice(cfg: SuiteConfig, name: str) -> dict[str, Any]:
    """The settings one code set's fit reads (its cache key covers exactly these)."""
    _, quantizer = parse_code_set(name)
    q = cfg.quantize
    if quantizer == "vq":
        return {"quantizer": "vq", "vq_k": q.vq_k}
    out: dict[str, Any] = {"quantizer": quantizer, "levels": q.levels, "codebook_size": q.codebook_size,
                           "dedup": q.dedup}
    if quantizer == "rq_kmeans":
        out["niter"] = q.niter
    else:
        out["rq_vae"] = q.rq_vae
    return out


def compute_codes(ctx: StageContext, name: str) -> CodeSet:
    """Fit quantizer `name` on its source embedding (frozen or aligned, seeded by the replicate seed)."""
    from qarm.diagnostics import code_diagnostics
    from qarm.quantize import RQKmeans, add_dedup_level, fit_rq_vae, vq_codes

    source, quantizer = parse_code_set(name)
    x = ctx.inputs["frozen"].frozen_embeddings() if source == "frozen" else ctx.inputs["align"].embeddings
    q, n = ctx.cfg.quantize, x.shape[0]
    if quantizer == "vq":
        c = vq_codes(x, k=min(q.vq_k, n - 1), gpu=_faiss_gpu(ctx)).astype(np.int64)
        return CodeSet(name, "vq", c, n, {"k": int(c.shape[1]), "distinct_neighbours": int(np.unique(c).size)})
    k = min(q.codebook_size, n)
    books = None
    if quantizer == "rq_kmeans":
        model = RQKmeans(levels=q.levels, codebook_size=k, niter=q.niter, seed=ctx.seed, gpu=_faiss_gpu(ctx)).fit(x)
        c, books = model.encode(x), model.codebooks
    else:
        c = fit_rq_vae(x, q.levels, k, q.rq_vae, seed=ctx.seed, device=_device(ctx)).encode(x)
    if q.dedup:
        c, books = add_dedup_level(c), None
    c = c.astype(np.int64)
    vocab = max(k, int(c.max()) + 1) if q.dedup else k
    diag = code_diagnostics(x, c, codebook_size=int(c.max()) + 1 if q.dedup else k, codebooks=books)
    return CodeSet(name, "rq", c, vocab, diag)


def save_codes(cs: CodeSet, out: Path) -> None:
    np.save(out / "codes.npy", cs.codes)
    (out / "code_set.json").write_text(json.dumps({"name": cs.name, "kind": cs.kind, "vocab": cs.vocab,
                                                   "diagnostics": to_json(cs.diagnostics)}))


def load_codes(path: Path) -> CodeSet:
    from qarm.diagnostics import CodeDiagnostics

    meta = json.loads((path / "code_set.json").read_text())
    diag = meta["diagnostics"]
    if meta["kind"] == "rq":
        diag = from_json(CodeDiagnostics, diag, path / "code_set.json")
    return CodeSet(meta["name"], meta["kind"], np.load(path / "codes.npy"), int(meta["vocab"]), diag)


def describe_codes(cs: CodeSet) -> str:
    return f"{cs.name}{tuple(cs.codes.shape)}"
