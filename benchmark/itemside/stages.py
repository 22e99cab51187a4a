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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from benchmark.config.suite import SuiteConfig, slice_hash
from benchmark.config.variants import get_variant
from benchmark.core import __version__
from benchmark.core.configlib import plain_without_defaults
from benchmark.core.errors import ConfigError
from benchmark.itemside import compute as P


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
    """A code set reads its source embedding and the data: which items are warm (a VQ bag's candidates; the rows
    a residual quantizer fits its codebooks on under quantize.fit_on = "warm")."""
    source, _ = P.parse_code_set(name)
    return ("data", "frozen") if source == "frozen" else ("data", "align")


STAGES: tuple[Stage, ...] = (
    Stage("data", (), False, lambda cfg, _: cfg.data, P.compute_data, P.save_data, P.load_data, P.describe_data),
    Stage("pairs", ("data",), True, lambda cfg, _: plain_without_defaults(cfg.pairs, cfg.pairs.LATER_FIELDS),
          P.compute_pairs, P.save_pairs, P.load_pairs, P.describe_pairs),
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


def entry_order(cfg: SuiteConfig, first: Iterable[tuple[str, str]] = ()) -> list[tuple[Stage, str]]:
    """The item side's entries (stage, instance) in the order they are computed: a topological order of the
    stage graph that, among the entries whose inputs are finished, takes one in `first` (e.g. the entries a
    suite's cells read: benchmark.cells.plan.CellPlan.reads) before the others, each group in table order. With
    the cells' entries first, a suite computes data, frozen features, the frozen code sets cells read, pairs,
    alignment, the aligned code sets cells read, then the code-quality panel's other code sets, so the cells
    that read the frozen features can start before alignment (benchmark.engine.pool). Without `first`: the
    table order. The order changes no entry (a key covers its inputs, not the order)."""
    entries = [(s, inst) for s in ITEM_SIDE for inst in s.instances(cfg)]
    wanted = set(first)
    done: set[str] = set()  # stages with every instance finished
    left = {s.name: sum(1 for e in entries if e[0].name == s.name) for s in ITEM_SIDE}
    out: list[tuple[Stage, str]] = []
    todo = list(entries)
    while todo:
        ready = [e for e in todo if all(u in done for u in e[0].inputs_of(e[1]) if u in left)]
        if not ready:  # the table is a DAG in topological order: cannot happen
            raise AssertionError(f"item side: no entry can run among {[(s.name, i) for s, i in todo]}")
        pick = next((e for e in ready if (e[0].name, e[1]) in wanted), ready[0])
        todo.remove(pick)
        out.append(pick)
        left[pick[0].name] -= 1
        if left[pick[0].name] == 0:
            done.add(pick[0].name)
    return out


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
    """The cache keys of one replicate's item side: one per single-entry stage, one per code set; device_class:
    the class of device they were computed on ("cpu", "cuda"), which the rank cells' keys carry too."""

    seed: int
    stages: dict[str, str]
    code_sets: dict[str, str]
    device_class: str = "cpu"

    def key(self, stage: str, instance: str = "") -> str:
        return self.code_sets[instance] if stage == "codes" else self.stages[stage]

    def flat(self) -> dict[str, str]:
        """{"data": k, "pairs": k, ..., "codes/aligned_rq_kmeans": k, ...} (MLflow tags, the manifest)."""
        return {**self.stages, **{f"codes/{n}": k for n, k in self.code_sets.items()}}


def device_key_part(device_class: str) -> list[str]:
    """What a seeded stage's or a rank cell's key adds for the device class: nothing on the CPU (every CPU key
    stays what it was), "device=cuda" elsewhere (GPU alignment, faiss and training give other floats)."""
    return [] if device_class == "cpu" else [f"device={device_class}"]


def item_side_keys(cfg: SuiteConfig, data_key: str, seed: int, device_class: str = "cpu") -> ItemSideKeys:
    """Every item-side key of the replicate `seed`, from the config, the data key and the class of device the
    run computes on (`torch.device.type`) alone (nothing runs). The seeded stages (pairs, align, codes) carry the
    device class when it is not "cpu"; data and frozen do not (the data are the same, and the frozen encoders'
    GPU features are within 0.999 cosine of the CPU's: scripts/gpu_check.py, steps text and image)."""
    stages: dict[str, str] = {"data": data_key}
    code_sets: dict[str, str] = {}
    for stage in ITEM_SIDE[1:]:
        for inst in stage.instances(cfg):
            ups = [stages[u] for u in stage.inputs_of(inst)]
            seeded = [str(seed), *device_key_part(device_class)] if stage.seeded else []
            key = slice_hash(stage.slice(cfg, inst), *ups, *seeded, version=__version__)
            if stage.name == "codes":
                code_sets[inst] = key
            else:
                stages[stage.name] = key
    return ItemSideKeys(seed, stages, code_sets, device_class)
