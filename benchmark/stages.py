"""The stage graph, declared once: every stage's name, upstream stages, the config slice its cache key covers,
and its compute / save / load functions. Cache keys, `--force`, `plan`, the progress bar and the assembly of
the item side all read this table.

    data ─► pairs ─► align ─► codes ─► rank (cells) ─► report
      └──► frozen ──┘  └───────┘
                       (codes: one entry per code set, e.g. aligned_rq_kmeans, frozen_rq_kmeans, aligned_vq)

A key is the hash of the stage's config slice, its upstream keys, the replicate seed (seeded stages) and the
package version; so a rerun finds finished entries, an interrupted suite resumes, an ablation recomputes only
the stages its field reaches, and a new replicate seed recomputes only the seeded stages.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from benchmark import __version__, distributed
from benchmark import pipeline as P
from benchmark.cache import StageCache
from benchmark.config import SuiteConfig, slice_hash
from benchmark.errors import ConfigError
from benchmark.variants import get_variant


@dataclass(frozen=True)
class Stage:
    """One node of the stage graph. `slice(cfg, instance)` is the config its key covers; `instances(cfg)` lists
    the entries the stage makes for a suite (one, "", except codes: one per code set); `upstream_of(instance)`
    narrows the upstream stages an instance reads (default: all of `upstream`)."""

    name: str
    upstream: tuple[str, ...]
    seeded: bool
    slice: Callable[[SuiteConfig, str], Any]
    compute: Callable[..., Any] | None = None
    save: Callable[[Any, Any], None] | None = None
    load: Callable[[Any], Any] | None = None
    describe: Callable[[Any], str] | None = None
    instances: Callable[[SuiteConfig], tuple[str, ...]] = lambda cfg: ("",)
    upstream_of: Callable[[str], tuple[str, ...]] | None = None

    def inputs_of(self, instance: str) -> tuple[str, ...]:
        return self.upstream_of(instance) if self.upstream_of is not None else self.upstream


def needed_code_sets(cfg: SuiteConfig) -> tuple[str, ...]:
    """The code sets a suite fits: those its variants read (the configured quantizer of each content source,
    the VQ bag) plus every residual quantizer on both sources for the code-quality panel."""
    names: dict[str, None] = {}
    for v in map(get_variant, cfg.suite.variants):
        src = v.content_source or "aligned"
        if v.codes:
            names[P.code_set_name(src, cfg.quantize.quantizer)] = None
        if v.vq:
            names[P.code_set_name(src, "vq")] = None
    for source in P.CODE_SOURCES:
        for quantizer in ("rq_kmeans", "rq_vae"):
            names[P.code_set_name(source, quantizer)] = None
    return tuple(names)


def _code_upstream(name: str) -> tuple[str, ...]:
    source, _ = P.parse_code_set(name)
    return ("frozen",) if source == "frozen" else ("align",)


STAGES: tuple[Stage, ...] = (
    Stage("data", (), False, lambda cfg, _: cfg.data, P.compute_data, P.save_data, P.load_data, P.describe_data),
    Stage("pairs", ("data",), True, lambda cfg, _: cfg.pairs, P.compute_pairs, P.save_pairs, P.load_pairs,
          P.describe_pairs),
    Stage("frozen", ("data",), False, lambda cfg, _: cfg.encoder, P.compute_frozen, P.save_frozen, P.load_frozen,
          P.describe_frozen),
    Stage("align", ("data", "pairs", "frozen"), True, lambda cfg, _: cfg.align, P.compute_align, P.save_align,
          P.load_align, P.describe_align),
    Stage("codes", ("frozen", "align"), True, P.code_slice, P.compute_codes, P.save_codes, P.load_codes,
          P.describe_codes, instances=needed_code_sets, upstream_of=_code_upstream),
    Stage("rank", ("data", "frozen", "align", "codes"), True, lambda cfg, _: cfg.rank),
    Stage("report", ("rank",), False, lambda cfg, _: cfg.report),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
ITEM_SIDE: tuple[Stage, ...] = tuple(s for s in STAGES if s.compute is not None)


def check_force(force: Iterable[str]) -> None:
    bad = [f for f in force if f not in BY_NAME]
    if bad:
        raise ConfigError(f"--force {bad[0]}: unknown stage; expected one of {', '.join(STAGE_NAMES)}")


def downstream_closure(forced: Iterable[str]) -> set[str]:
    """The forced stages and every stage that (transitively) reads one of them."""
    out = set(forced)
    for stage in STAGES:  # the table is in topological order
        if out.intersection(stage.upstream):
            out.add(stage.name)
    return out


# ---- keys ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemSideKeys:
    """The cache keys of one replicate's item side: one per single-entry stage, one per code set."""

    seed: int
    stages: dict[str, str]
    code_sets: dict[str, str]

    def key(self, stage: str, instance: str = "") -> str:
        return self.code_sets[instance] if stage == "codes" else self.stages[stage]

    def flat(self) -> dict[str, str]:
        """{"data": k, "pairs": k, ..., "codes/aligned_rq_kmeans": k, ...} (MLflow tags, the manifest)."""
        return {**self.stages, **{f"codes/{n}": k for n, k in self.code_sets.items()}}


def item_side_keys(cfg: SuiteConfig, data_key: str, seed: int) -> ItemSideKeys:
    """Every item-side key of the replicate `seed`, from the config and the data key alone (nothing runs)."""
    stages: dict[str, str] = {"data": data_key}
    code_sets: dict[str, str] = {}
    for stage in ITEM_SIDE[1:]:
        for inst in stage.instances(cfg):
            ups = [stages[u] for u in stage.inputs_of(inst)]
            key = slice_hash(stage.slice(cfg, inst), *ups, *([str(seed)] if stage.seeded else []),
                             version=__version__)
            if stage.name == "codes":
                code_sets[inst] = key
            else:
                stages[stage.name] = key
    return ItemSideKeys(seed, stages, code_sets)


# ---- running the item side -----------------------------------------------------------------------


def _say(msg: str) -> None:
    """A status line on stderr that does not tear an active progress bar."""
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def run_item_side(cfg: SuiteConfig, cache: StageCache, seed: int, keys: ItemSideKeys, *,
                  progress: bool = True, data: Any = None) -> dict[str, Any]:
    """Compute or load every item-side entry of replicate `seed`, in table order. Returns the artifacts by
    stage name ("codes" maps code set names to CodeSets). `data`: an already loaded data artifact."""
    from tqdm import tqdm

    entries = [(s, inst) for s in ITEM_SIDE for inst in s.instances(cfg)]
    bar = tqdm(total=len(entries), desc=f"item side (seed {seed})", unit="stage", disable=not progress,
               file=sys.stderr, dynamic_ncols=True, bar_format="{desc}: {n}/{total} {bar} [{elapsed}<{remaining}] {postfix}")
    out: dict[str, Any] = {"codes": {}}
    for stage, inst in entries:
        if stage.name == "data" and data is not None:
            out["data"] = data
            bar.update(1)
            continue
        t0 = time.monotonic()
        artifact, cached = _run_entry(cfg, cache, seed, stage, inst, keys.key(stage.name, inst), out, progress)
        if stage.name == "codes":
            out["codes"][inst] = artifact
        else:
            out[stage.name] = artifact
        label = f"{stage.name}/{inst}" if inst else stage.name
        assert stage.describe is not None
        _say(f"[{label:<8}] {stage.describe(artifact)}  ({'cached' if cached else f'{time.monotonic() - t0:.1f}s'})")
        bar.update(1)
        bar.set_postfix_str(f"{label} done")
    bar.close()
    return out


def _run_entry(cfg: SuiteConfig, cache: StageCache, seed: int, stage: Stage, inst: str, key: str,
               done: dict[str, Any], progress: bool) -> tuple[Any, bool]:
    assert stage.compute is not None and stage.save is not None and stage.load is not None
    if distributed.active():  # several ranks: rank 0 computes and writes; alignment runs on all of them
        return distributed.run_entry(cfg, cache, seed, stage, inst, key, done, progress)
    if cache.done(stage.name, key):
        return stage.load(cache.path(stage.name, key)), True
    inputs = {u: done[u] for u in stage.upstream if u in done}
    with cache.writing(stage.name, key, {"instance": inst, "seed": seed if stage.seeded else None}) as tmp:
        ctx = P.StageContext(cfg, seed, inputs, tmp, cache.path(stage.name, key), progress)
        artifact = stage.compute(ctx, inst) if inst else stage.compute(ctx)
        stage.save(artifact, tmp)
    return artifact, False


# ---- cells ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellPlan:
    """One (variant, model, seed) cell, decided before it runs: which code sets and which content embedding it
    reads, SIM's search unit (mode and the code set hard search matches on), and its cache key."""

    variant: str
    model: str
    seed: int
    code_set: str | None
    vq_set: str | None
    dense_source: str | None
    sim_search: str | None
    sim_search_codes: str | None
    key: str


def plan_cell(cfg: SuiteConfig, variant: str, model: str, seed: int, keys: ItemSideKeys) -> CellPlan:
    """Decide what the cell reads. SIM: `rank.sim.search = "hard"` matches on the variant's own RQ codes;
    a variant without RQ codes has no prefix to match and uses the soft (inner-product) search."""
    v = get_variant(variant)
    src = v.content_source or "aligned"
    code_set = P.code_set_name(src, cfg.quantize.quantizer) if v.codes else None
    vq_set = P.code_set_name(src, "vq") if v.vq else None
    dense = src if v.dense else None
    search, search_codes = None, None
    if model == "sim":
        search = cfg.rank.sim.search if code_set is not None else "soft"
        search_codes = code_set if search == "hard" else None
    upstream = [keys.key("data")]
    if v.content_source is not None:
        upstream.append(keys.key("frozen" if v.content_source == "frozen" else "align"))
    for name in dict.fromkeys(n for n in (code_set, vq_set, search_codes) if n):
        upstream.append(keys.key("codes", name))
    slice_ = {"rank": cfg.rank, "variant": variant, "model": model, "seed": seed,
              "quantizer": cfg.quantize.quantizer if (v.codes or v.vq) else None,
              "sim_search": search, "sim_search_codes": search_codes}
    key = slice_hash(slice_, *upstream, version=__version__)
    return CellPlan(variant, model, seed, code_set, vq_set, dense, search, search_codes, key)
