"""What each item-side stage computes, saves and loads: the functions the stage table (benchmark.itemside.stages) names.

    data    PreparedData      benchmark.data: load, validate, split, histories
    pairs   MinedPairs        qarm.pairs.mine_pairs on the TRAIN positives (U2I + Swing)
    frozen  ItemFeatures      qarm.encoders: frozen per-modality features of ALL items
    align   Aligned           qarm.alignment.align: aligned embeddings (N, d) + AlignSummary
    codes   CodeSet           qarm.quantize: one code set (source x quantizer) + its diagnostics

Each compute function receives a StageContext (the suite config, the replicate seed, the upstream artifacts,
the entry folder being written, the device and the World the run resolved once); library code never logs, the
suite logs what these return. faiss k-means and top-k search use the GPU when faiss sees one, unless the run's
device is the CPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmark.config.suite import SuiteConfig
from benchmark.core.errors import ConfigError
from benchmark.core.records import from_json, to_json
from benchmark.core.registry import QUANTIZERS
from benchmark.core.world import World
from benchmark.itemside.quantizers import FitContext, get_quantizer

CODE_SOURCES = ("frozen", "aligned")


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
    device: Any = "cpu"
    world: World = field(default_factory=World)


def ranks_of(world: World) -> Any:
    """The qarm.ranks.Ranks of a World: its rank and size, and World.gather_objects as the gather."""
    from qarm.ranks import Ranks

    return Ranks(world.rank, world.size, world.gather_objects if world.active else None)


def _faiss_gpu(ctx: StageContext) -> bool | str:
    """faiss's GPU choice: "auto" (its GPU when it sees one) unless the run computes on the CPU."""
    return False if str(ctx.device) == "cpu" else "auto"


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
    """A collective stage: under torchrun each rank computes the Swing neighbours of its items (gathered: the
    one-process neighbours exactly) and the U2I two towers train under DDP with the in-batch negatives gathered."""
    from qarm.pairs import mine_pairs

    prepared = ctx.inputs["data"]
    return mine_pairs(prepared.train_positives(), prepared.n_items, ctx.cfg.pairs, seed=ctx.seed,
                      device=str(ctx.device), ranks=ranks_of(ctx.world), distributed=ctx.world.active)


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


def text_encoder_of(e: Any, device: Any = "cpu") -> Any:
    """The TextEncoder an EncoderConfig names, computing on `device`."""
    from qarm.encoders import TextEncoder

    return TextEncoder(e.text_model or None, max_length=e.max_length, batch_size=e.batch_size, device=device)


def image_encoder_of(e: Any, device: Any = "cpu") -> Any:
    """The ImageEncoder an EncoderConfig names (Lite0 at e.image_size, or a local HF vision model), computing on
    `device`."""
    from qarm.encoders import ImageEncoder

    return ImageEncoder(e.image_model or None, image_size=e.image_size, batch_size=e.batch_size, device=device)


def _image_paths(ctx: StageContext) -> list[str | None]:
    items = ctx.inputs["data"].items
    paths = items["image_path"].to_list() if "image_path" in items.columns else []
    if not any(paths):
        raise ConfigError(f"encoder.modalities includes 'image' but dataset {ctx.cfg.data.dataset!r} has no "
                          "image paths (items.image_path is empty)")
    return paths


def compute_frozen(ctx: StageContext) -> Any:
    """Frozen per-modality item features (qarm.encoders.ItemFeatures) of ALL items, cold ones included. A
    collective stage: under torchrun each rank encodes its part of the encoders' batches and every rank holds
    the one-process features exactly (the synthetic vectors are cheap: every rank draws them all)."""
    from qarm.encoders import item_features

    e, prepared, device = ctx.cfg.encoder, ctx.inputs["data"], str(ctx.device)
    if e.kind == "synthetic":  # no encoder: vectors from each item's category (docs/scale.md)
        from qarm.encoders.synthetic import synthetic_item_features

        if prepared.items["category"].null_count() == prepared.items.height:
            raise ConfigError(f"encoder.kind = 'synthetic' derives vectors from item categories, but dataset "
                              f"{ctx.cfg.data.dataset!r} has none (items.category is empty)")
        return synthetic_item_features(prepared.items["category"].to_list(), e.synthetic)
    texts = prepared.items["text"].to_list() if "text" in e.modalities else None
    paths = _image_paths(ctx) if "image" in e.modalities else None
    return item_features(texts, paths, text_encoder=text_encoder_of(e, device) if texts else None,
                         image_encoder=image_encoder_of(e, device) if paths else None, progress=ctx.progress,
                         ranks=ranks_of(ctx.world))


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
    """embeddings: (N, d) float32 aligned embeddings of ALL items (the refit's under align.refit: what the codes
    and rankers read); summary: qarm AlignSummary; selected: (N, d) float32 of the validation-selected model
    when a refit replaced it (what the held-out test figures measure), else None."""

    embeddings: np.ndarray
    summary: Any
    selected: np.ndarray | None = None

    @property
    def heldout(self) -> np.ndarray:
        """The embedding held-out test pairs may be measured on (never one trained on them)."""
        return self.embeddings if self.selected is None else self.selected


def compute_align(ctx: StageContext) -> Any:
    """The fusion head trains over the cached frozen features; a modality whose align.trainable_layers entry is
    not 0 also gets a tower (its encoder's top blocks, or all of it) fed by the raw item texts / images. Under
    torchrun every rank trains the one model (DDP, qarm.alignment.distributed) and scores its part of the held-out
    queries (the recalls gathered exactly)."""
    from qarm.alignment import align

    a, e, pairs, device = ctx.cfg.align, ctx.cfg.encoder, ctx.inputs["pairs"].pairs, ctx.device
    raw: dict[str, Any] = {}
    if "text" in e.modalities and a.towers.of("text") != 0:
        raw |= {"texts": ctx.inputs["data"].items["text"].to_list(), "text_encoder": text_encoder_of(e, device)}
    if "image" in e.modalities and a.towers.of("image") != 0:
        raw |= {"image_paths": _image_paths(ctx), "image_encoder": image_encoder_of(e, device)}
    return align(pairs, features=ctx.inputs["frozen"], config=a, seed=ctx.seed, progress=ctx.progress,
                 device=device, distributed=ctx.world.active, ranks=ranks_of(ctx.world),
                 reference=ctx.inputs["pairs"].u2i_item_embeddings, **raw)  # U2I: the collaborative reference


def save_align(result: Any, out: Path) -> None:
    result.save(out / "model")
    np.save(out / "embeddings.npy", result.embeddings.astype(np.float32))
    if result.selected_embeddings is not None:
        np.save(out / "selected_embeddings.npy", result.selected_embeddings.astype(np.float32))
    (out / "summary.json").write_text(json.dumps(to_json(result.summary)))


def load_align(path: Path) -> Aligned:
    from qarm.alignment import AlignSummary

    summary = from_json(AlignSummary, json.loads((path / "summary.json").read_text()), path / "summary.json")
    selected = path / "selected_embeddings.npy"
    return Aligned(np.load(path / "embeddings.npy"), summary, np.load(selected) if selected.exists() else None)


def describe_align(result: Any) -> str:
    s = result.summary
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    refit = f"; refit on {s.n_refit_pairs} pairs x {s.refit_epochs} epochs" if s.refit else ""
    return (f"embeddings {result.embeddings.shape}; held-out pair recall@{s.k}: frozen {fmt(s.frozen_recall)} "
            f"-> aligned {fmt(s.aligned_recall)}{refit}")


# ---- codes ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CodeSet:
    """One code set: name "<source>_<quantizer>", kind "rq" (codes (N, L) int64, level l in [0, vocab_sizes[l]))
    or "vq" (codes (N, k) int64 item_idx, vocab_sizes (N,)), and its diagnostics (CodeDiagnostics, or
    {k, distinct_neighbours, candidates})."""

    name: str
    kind: str
    codes: np.ndarray
    vocab_sizes: tuple[int, ...]
    diagnostics: Any

    @property
    def vocab(self) -> int:
        """The largest vocabulary of any level (a VQ bag's: N)."""
        return max(self.vocab_sizes)


def code_set_name(source: str, quantizer: str) -> str:
    return f"{source}_{quantizer}"


# Panel variants of a residual code set: "aligned_rq_kmeans.fsq" is the aligned RQ-Kmeans codes with an FSQ last
# level (QARM V2), ".balanced" with balanced k-means at every level (OneRec), ".dedup" with TIGER's suffix.
MODIFIERS: dict[str, dict[str, Any]] = {"dedup": {"dedup": True}, "fsq": {"last_level": "fsq"},
                                        "balanced": {"balanced": True}}


def parse_code_set(name: str) -> tuple[str, str]:
    """"aligned_rq_kmeans" -> ("aligned", "rq_kmeans"); modifiers (".fsq") are ignored (see `code_quantize`)."""
    source, _, quantizer = name.split(".")[0].partition("_")
    if source not in CODE_SOURCES or quantizer not in QUANTIZERS:
        raise ValueError(f"not a code set name: {name!r} (expected <frozen|aligned>_<registered quantizer>)")
    return source, quantizer


def code_quantize(cfg: SuiteConfig, name: str) -> Any:
    """The [quantize] settings one code set is fitted with: the suite's, with the name's modifiers applied."""
    import dataclasses

    q = cfg.quantize
    for mod in name.split(".")[1:]:
        if mod not in MODIFIERS:
            raise ValueError(f"unknown code set modifier {mod!r} in {name!r}; expected one of {sorted(MODIFIERS)}")
        q = dataclasses.replace(q, **MODIFIERS[mod])
    return q


def code_slice(cfg: SuiteConfig, name: str) -> dict[str, Any]:
    """The settings one code set's fit reads (its cache key covers exactly these)."""
    _, quantizer = parse_code_set(name)
    return get_quantizer(quantizer).key_slice(code_quantize(cfg, name))


def compute_codes(ctx: StageContext, name: str) -> CodeSet:
    """Fit quantizer `name` (a registered QuantizerSpec) on its source embedding (frozen or aligned, seeded by
    the replicate seed; the codebooks on the warm items under quantize.fit_on = "warm", every item encoded); its
    diagnostics (over every item)."""
    from qarm.diagnostics import code_diagnostics
    from qarm.quantize import add_dedup_level, dedup_vocab_size

    source, quantizer = parse_code_set(name)
    spec = get_quantizer(quantizer)
    x = ctx.inputs["frozen"].frozen_embeddings() if source == "frozen" else ctx.inputs["align"].embeddings
    q = code_quantize(ctx.cfg, name)
    warm = ~ctx.inputs["data"].items["is_cold"].to_numpy() if "data" in ctx.inputs else np.ones(x.shape[0], bool)
    fitted = spec.fit(x, q, FitContext(ctx.seed, ctx.device, _faiss_gpu(ctx), warm, q.fit_on))
    c, sizes = fitted.codes.astype(np.int64), list(fitted.vocab_sizes)
    if spec.kind == "vq":
        return CodeSet(name, "vq", c, tuple(sizes), fitted.extra or {"k": int(c.shape[1])})
    if q.dedup:  # TIGER's suffix after whichever last level ran
        c = add_dedup_level(c)
        sizes.append(dedup_vocab_size(c))
    decoder = None if q.dedup else fitted.decode
    diag = code_diagnostics(x, c, codebook_size=sizes, decoder=decoder, gpu=_faiss_gpu(ctx))
    return CodeSet(name, "rq", c, tuple(sizes), diag)


def save_codes(cs: CodeSet, out: Path) -> None:
    np.save(out / "codes.npy", cs.codes)
    (out / "code_set.json").write_text(json.dumps({"name": cs.name, "kind": cs.kind,
                                                   "vocab_sizes": list(cs.vocab_sizes),
                                                   "diagnostics": to_json(cs.diagnostics)}))


def load_codes(path: Path) -> CodeSet:
    from qarm.diagnostics import CodeDiagnostics

    meta = json.loads((path / "code_set.json").read_text())
    diag = meta["diagnostics"]
    if meta["kind"] == "rq":
        diag = from_json(CodeDiagnostics, diag, path / "code_set.json")
    return CodeSet(meta["name"], meta["kind"], np.load(path / "codes.npy"),
                   tuple(int(v) for v in meta["vocab_sizes"]), diag)


def describe_codes(cs: CodeSet) -> str:
    return f"{cs.name}{tuple(cs.codes.shape)}"
