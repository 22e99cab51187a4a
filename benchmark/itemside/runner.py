"""The one runner of the item side: every stage entry is loaded from the stage cache or computed through
`StageCache.load_or_compute` (also under torchrun), and one replicate's artifacts come back as a typed
`ItemSide`. The suite, `align-refs` and `perf scale` all go through `run_entry` / `run_item_side`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.config.suite import SuiteConfig
from benchmark.core.cache import StageCache
from benchmark.core.world import World
from benchmark.itemside.compute import Aligned, CodeSet, StageContext
from benchmark.itemside.stages import BY_NAME, ItemSideKeys, Stage, entry_order

# computed by every rank together under torchrun (pairs: Swing by item, U2I under DDP; frozen: each rank encodes
# its part of the items; align: DDP); the rest by rank 0 while the others wait and load
COLLECTIVE_STAGES = frozenset({"pairs", "frozen", "align"})


@dataclass(frozen=True, eq=False)
class ItemSide:
    """One replicate's item side: its seed and keys, the prepared data (benchmark.data.PreparedData), the mined
    pairs (qarm.pairs.MinedPairs), the frozen features (qarm.encoders.ItemFeatures), the aligned embedding and
    the code sets by name. One that `load_entries` assembles for a cell holds only what the cell reads: the
    rest are None."""

    seed: int
    keys: ItemSideKeys
    data: Any
    pairs: Any
    frozen: Any
    align: Aligned | None
    codes: dict[str, CodeSet] = field(default_factory=dict)


def run_entry(cfg: SuiteConfig, cache: StageCache, seed: int, stage: Stage, inst: str, key: str,
              done: dict[str, Any], *, device: Any = "cpu", world: World | None = None,
              progress: bool = True) -> tuple[Any, bool]:
    """One item-side entry: (artifact, cached). `done`: the upstream artifacts by stage name."""
    assert stage.compute is not None and stage.save is not None and stage.load is not None
    world = world or World()
    inputs = {u: done[u] for u in stage.upstream if u in done}
    final = cache.path(stage.name, key)

    def compute(workdir: Path) -> Any:
        world.where = f"stage {stage.name}{'/' + inst if inst else ''}"
        ctx = StageContext(cfg, seed, inputs, workdir, final, progress, device, world)
        return stage.compute(ctx, inst) if inst else stage.compute(ctx)

    return cache.load_or_compute(stage.name, key, compute, stage.save, stage.load, world=world,
                                 meta={"instance": inst, "seed": seed if stage.seeded else None},
                                 collective=stage.name in COLLECTIVE_STAGES)


def run_item_side(cfg: SuiteConfig, cache: StageCache, keys: ItemSideKeys, *, device: Any = "cpu",
                  world: World | None = None, progress: bool = True, data: Any = None,
                  say: Callable[[str], None] | None = None,
                  on_entry: Callable[[str, str], None] | None = None,
                  first: Iterable[tuple[str, str]] = ()) -> ItemSide:
    """Compute or load every item-side entry of replicate `keys.seed`, in the order of
    benchmark.itemside.stages.entry_order (`first`: the entries to take first where the graph allows, e.g. those
    the suite's cells read; by default the table order). `data`: an already loaded
    data artifact; `say`: where a status line per entry goes (default: stderr when `progress`, else nowhere —
    a worker process that loads what its parent computed prints nothing); `on_entry(stage, instance)`: called
    as each entry is sealed in the cache (computed or found there), e.g. to start the cells that read it.

    With `progress`, one display on stderr: this replicate's bar (entries done, the entry being computed) and,
    while an encoder or alignment runs, its own bar nested on the line below, erased when it ends
    (qarm.progress); the status lines print above them."""
    from tqdm import tqdm

    say = say or (_say if progress else (lambda msg: None))
    entries = entry_order(cfg, first)
    bar = tqdm(total=len(entries), desc=f"item side (seed {keys.seed})", unit="stage", disable=not progress,
               file=sys.stderr, dynamic_ncols=True,
               bar_format="{desc}: {n}/{total} {bar} [{elapsed}<{remaining}] {postfix}")
    out: dict[str, Any] = {}
    codes: dict[str, CodeSet] = {}
    for stage, inst in entries:
        if stage.name == "data" and data is not None:
            out["data"] = data
            bar.update(1)
            if on_entry is not None:
                on_entry(stage.name, inst)
            continue
        label = f"{stage.name}/{inst}" if inst else stage.name
        bar.set_postfix_str(f"{label} ...")  # an encoder's or alignment's own bar shows on the line below
        t0 = time.monotonic()
        artifact, cached = run_entry(cfg, cache, keys.seed, stage, inst, keys.key(stage.name, inst), out,
                                     device=device, world=world, progress=progress)
        if stage.name == "codes":
            codes[inst] = artifact
        else:
            out[stage.name] = artifact
        assert stage.describe is not None
        say(f"[{label:<8}] {stage.describe(artifact)}  ({'cached' if cached else f'{time.monotonic() - t0:.1f}s'})")
        bar.update(1)
        bar.set_postfix_str(f"{label} done")
        if on_entry is not None:
            on_entry(stage.name, inst)
    bar.close()
    codes = {inst: codes[inst] for inst in BY_NAME["codes"].instances(cfg)}  # table order
    return ItemSide(keys.seed, keys, out["data"], out["pairs"], out["frozen"], out["align"], codes)


def load_entries(cache: StageCache, keys: ItemSideKeys, reads: Iterable[tuple[str, str]],
                 memo: dict[tuple[str, str, str], Any] | None = None) -> ItemSide:
    """The item side of replicate `keys.seed` with only the entries `reads` ((stage, code set or ""), e.g. a
    cell plan's `reads`) loaded from the cache; the others are None (code sets: absent). Every entry read must
    be sealed already: this computes nothing (a cell worker loads what its parent computed). memo: artifacts
    already loaded, by (cache root, stage, key), reused and filled."""
    memo = {} if memo is None else memo
    got: dict[str, Any] = {}
    codes: dict[str, CodeSet] = {}
    for name, inst in reads:
        stage, key = BY_NAME[name], keys.key(name, inst)
        assert stage.load is not None
        slot = (str(cache.root), name, key)
        if slot not in memo:
            if not cache.done(name, key):
                raise RuntimeError(f"item-side entry {name}{'/' + inst if inst else ''} ({key}) of replicate "
                                   f"{keys.seed} is not finished in {cache.root}; a cell reads it")
            memo[slot] = stage.load(cache.path(name, key))
        if name == "codes":
            codes[inst] = memo[slot]
        else:
            got[name] = memo[slot]
    return ItemSide(keys.seed, keys, got.get("data"), got.get("pairs"), got.get("frozen"), got.get("align"), codes)


def _say(msg: str) -> None:
    """A status line on stderr that does not tear an active progress bar."""
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)
