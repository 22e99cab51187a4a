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

from benchmark.config.suite import SuiteConfig, slice_hash
from benchmark.config.variants import get_variant
from benchmark.core import __version__
from benchmark.core.cache import StageCache
from benchmark.core.errors import ConfigError
from benchmark.dist import world as distributed
from benchmark.itemside import compute as P
from qarm.quantize.config import TokenizeConfig


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


SIM_SEARCH_CODE_SET = "frozen_rq_kmeans"  # rank.sim.search_codes = "frozen": every SIM variant searches these


def needed_code_sets(cfg: SuiteConfig) -> tuple[str, ...]:
    """The code sets a suite fits: those its variants read (the configured quantizer's codes of each source,
    the VQ bag), the frozen RQ codes SIM's hard search matches on, and for the code-quality panel every residual
    quantizer on both sources plus RQ-Kmeans with an FSQ last level, balanced k-means and the dedup suffix."""
    names: dict[str, None] = {}
    for v in map(get_variant, cfg.suite.variants):
        if v.codes:
            names[P.code_set_name(v.codes, cfg.quantize.quantizer)] = None
        if v.vq:
            names[P.code_set_name(v.vq, "vq")] = None
    sim = cfg.rank.sim
    if "sim" in cfg.suite.models and sim.search == "hard" and sim.search_codes == "frozen":
        names[SIM_SEARCH_CODE_SET] = None
    for source in P.CODE_SOURCES:
        for quantizer in ("rq_kmeans", "rq_vae"):
            names[P.code_set_name(source, quantizer)] = None
    for source in P.CODE_SOURCES:  # QARM V2's FSQ last level, OneRec's balanced k-means, TIGER's dedup suffix
        base = P.code_set_name(source, "rq_kmeans")
        for mod, change in P.MODIFIERS.items():
            if any(getattr(cfg.quantize, k) != v for k, v in change.items()):  # not what the base already is
                names[f"{base}.{mod}"] = None
    return tuple(names)


def _code_upstream(name: str) -> tuple[str, ...]:
    """A code set reads its source embedding; a VQ bag also reads the data (its candidates are warm items)."""
    source, quantizer = P.parse_code_set(name)
    src = ("frozen",) if source == "frozen" else ("align",)
    return ("data", *src) if quantizer == "vq" else src


STAGES: tuple[Stage, ...] = (
    Stage("data", (), False, lambda cfg, _: cfg.data, P.compute_data, P.save_data, P.load_data, P.describe_data),
    Stage("pairs", ("data",), True, lambda cfg, _: cfg.pairs, P.compute_pairs, P.save_pairs, P.load_pairs,
          P.describe_pairs),
    Stage("frozen", ("data",), False, lambda cfg, _: cfg.encoder, P.compute_frozen, P.save_frozen, P.load_frozen,
          P.describe_frozen),
    Stage("align", ("data", "pairs", "frozen"), True, lambda cfg, _: cfg.align, P.compute_align, P.save_align,
          P.load_align, P.describe_align),
    Stage("codes", ("data", "frozen", "align"), True, P.code_slice, P.compute_codes, P.save_codes, P.load_codes,
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
    """One (variant, model, seed) cell, decided before it runs: the code set feeding its code features (and how
    they are tokenised or controlled), its VQ bag, its content vector, whether it reads item metadata, SIM's
    search unit (mode and the code set hard search matches on), the replicate seed of its item side, its key."""

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
    upstream = [keys.key("data")]
    if v.dense:
        upstream.append(keys.key("frozen" if v.dense == "frozen" else "align"))
    for name in dict.fromkeys(n for n in (code_set, vq_set, search_codes) if n):
        upstream.append(keys.key("codes", name))
    slice_ = {"rank": cfg.rank, "variant": variant, "model": model, "seed": seed, "replicate_seed": keys.seed,
              "quantizer": q if (v.codes or v.vq) else None, "sim_search": search, "sim_search_codes": search_codes}
    if v.codes and q != "vq" and cfg.quantize.tokens != TokenizeConfig():  # only when set: default keys unchanged
        slice_["tokens"] = cfg.quantize.tokens
    key = slice_hash(slice_, *upstream, version=__version__)
    return CellPlan(variant, model, seed, keys.seed, code_set, v.control, vq_set, v.dense, v.metadata, search,
                    search_codes, key)
