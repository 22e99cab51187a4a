"""`qarm-bench align-select`: choose alignment settings on the validation pairs, report the test pairs once.

For every combination of the `--grid` values (KEY=V1,V2,...; the cartesian product) and every replicate seed,
it computes (or loads from the suite's stage cache) the item side up to the `align` stage with those settings,
and reads the validation-selected model's pair recall@k on the VALIDATION pairs (AlignSummary.val_recall, the
figure early stopping already used to choose the epoch) and its best epoch. The combination with the highest
mean validation recall over the seeds is chosen (ties: the first in grid order). Only then is the TEST pair
recall of the chosen combination read and printed, once, beside the frozen encoder's on the same pairs; the
other combinations' test figures are neither printed nor written.

Candidates run with align.refit = false: the refit (retraining on every pair for the chosen epoch count) changes
neither the validation figures nor the held-out test figure, which are measured before it, and it would
double the work. The chosen settings then go into a suite's [align] section as they are.

Writes runs/<suite>/alignment_selection.{json,md}; prints the markdown (or the JSON with --json).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.config.suite import SuiteConfig, load_config
from benchmark.core.configlib import to_plain
from benchmark.core.errors import ConfigError

EXAMPLES = """\
examples:
  qarm-bench align-select --grid align.hidden=0,256 --grid align.popularity_correction=0,1 --grid align.lr=2e-3,5e-3
  qarm-bench align-select movielens-100k --grid align.temperature=0.05,0.07,0.1 --seeds 0,1,2 --json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's flags (registered by benchmark.cli)."""
    p.add_argument("config", nargs="?", default=None, help="suite TOML or packaged name (default: movielens-100k)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="an align.* setting and the values to try (repeatable: the cartesian product)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field for every candidate (repeatable)")
    p.add_argument("--seeds", default=None, metavar="S1,S2",
                   help="replicate seeds to average the validation recall over (default: the suite's)")
    p.add_argument("--json", action="store_true", help="print the record as JSON instead of the table")


@dataclass(frozen=True)
class Candidate:
    """One combination of grid values: its settings, per seed the validation recall@k and best epoch."""

    settings: dict[str, str]
    val_recall: dict[int, float]
    best_epoch: dict[int, int]

    @property
    def mean_val(self) -> float:
        vals = [v for v in self.val_recall.values() if math.isfinite(v)]
        return sum(vals) / len(vals) if vals else math.nan


@dataclass(frozen=True)
class Selection:
    """The grid, every candidate's validation figures, the chosen one and its test figures (read once)."""

    suite: str
    k: int
    seeds: tuple[int, ...]
    candidates: tuple[Candidate, ...]
    chosen: int
    test_recall: dict[int, float]
    frozen_test_recall: dict[int, float]
    n_val_pairs: dict[int, int]
    n_test_pairs: dict[int, int]


def parse_grid(items: list[str]) -> list[tuple[str, list[str]]]:
    """["align.lr=2e-3,5e-3", ...] -> [("align.lr", ["2e-3", "5e-3"]), ...]; only align.* keys (alignment's
    settings: other stages would not be chosen on alignment's validation pairs)."""
    out = []
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not values.strip():
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. align.lr=2e-3,5e-3)")
        if not key.startswith("align."):
            raise ConfigError(f"--grid {item!r}: expected an align.* setting (alignment's validation pairs choose "
                              "alignment's settings only)")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if len(set(vals)) != len(vals):
            raise ConfigError(f"--grid {item!r}: expected distinct values")
        out.append((key, vals))
    if not out:
        raise ConfigError("--grid: expected at least one KEY=V1,V2,... (e.g. --grid align.lr=2e-3,5e-3)")
    if len({k for k, _ in out}) != len(out):
        raise ConfigError("--grid: each key once")
    return out


def align_side(cfg: SuiteConfig, seed: int, device: Any) -> dict[str, Any]:
    """The item side of replicate `seed` up to `align` (data, pairs, frozen, align), from the suite's stage
    cache or computed and stored under the keys `qarm-bench run` uses."""
    from benchmark.core.cache import StageCache
    from benchmark.data.preparation import data_key
    from benchmark.itemside.runner import run_entry
    from benchmark.itemside.stages import BY_NAME, item_side_keys

    cache = StageCache(cfg.suite_dir / "artifacts")
    keys = item_side_keys(cfg, data_key(cfg.data), seed)
    side: dict[str, Any] = {}
    for name in ("data", "pairs", "frozen", "align"):
        t0 = time.monotonic()
        side[name], cached = run_entry(cfg, cache, seed, BY_NAME[name], "", keys.key(name), side, device=device,
                                       progress=False)
        if not cached:
            print(f"[{name}] seed {seed}: computed in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    return side


def select(config: str | None, grid: list[tuple[str, list[str]]], overrides: list[str],
           seeds: tuple[int, ...] | None = None) -> Selection:
    """Run the grid (module doc) and choose on validation recall; the test recall of the chosen one only."""
    from benchmark.core.device import resolve_device
    from benchmark.engine.plan import replicate_seeds
    from qarm.alignment import references, split_pairs

    base = load_config(config, [*overrides, "align.refit=false"])
    seeds = tuple(seeds) if seeds else tuple(replicate_seeds(base))
    device = resolve_device(base.suite.device)
    candidates, configs = [], []
    for values in itertools.product(*(vals for _, vals in grid)):
        settings = {k: v for (k, _), v in zip(grid, values)}
        cfg = load_config(config, [*overrides, "align.refit=false", *(f"{k}={v}" for k, v in settings.items())])
        val, best = {}, {}
        for s in seeds:
            summary = align_side(cfg, s, device)["align"].summary
            val[s] = math.nan if summary.val_recall is None else float(summary.val_recall)
            best[s] = int(summary.best_epoch)
        candidates.append(Candidate(settings, val, best))
        configs.append(cfg)
    means = [c.mean_val for c in candidates]
    if not any(math.isfinite(m) for m in means):
        raise ConfigError("align-select: no candidate has a validation recall (align.val_frac = 0?); nothing to "
                          "choose on")
    chosen = max(range(len(candidates)), key=lambda i: (means[i] if math.isfinite(means[i]) else -math.inf, -i))
    test, frozen, n_val, n_test = {}, {}, {}, {}
    for s in seeds:  # the test pairs, read once: the chosen candidate only
        cfg = configs[chosen]
        side = align_side(cfg, s, device)
        split = split_pairs(side["pairs"].pairs, side["data"].n_items, cfg.align, s)
        refs = references(split.test, split.test_source,
                          {"frozen": side["frozen"].frozen_embeddings(), "aligned": side["align"].heldout},
                          k=cfg.align.recall_k, split=split.how)
        rows = {r.name: r.recall.overall for r in refs.rows}
        test[s], frozen[s] = float(rows["aligned"]), float(rows["frozen"])
        n_val[s], n_test[s] = int(side["align"].summary.n_val_pairs), int(refs.n_pairs)
    return Selection(base.suite.name, base.align.recall_k, seeds, tuple(candidates), chosen, test, frozen, n_val,
                     n_test)


def _mean(d: dict[int, float]) -> float:
    return sum(d.values()) / len(d)


def render(sel: Selection) -> str:
    """The markdown: one row per candidate (validation only), the choice, then the chosen one's test figures."""
    keys = list(sel.candidates[0].settings)
    lines = [f"# Alignment settings chosen on validation pairs: {sel.suite}", "",
             f"Validation pair recall@{sel.k} of the validation-selected epoch, mean over replicate seeds "
             f"{list(sel.seeds)} (per seed in brackets); candidates ran with align.refit = false. The test pairs "
             "are read once, for the chosen row only.", "",
             "| " + " | ".join(keys) + f" | validation recall@{sel.k} | per seed | best epochs | |",
             "|" + "---|" * (len(keys) + 4)]
    for i, c in enumerate(sel.candidates):
        per = ", ".join(f"{v:.4f}" for v in c.val_recall.values())
        lines.append("| " + " | ".join(c.settings[k] for k in keys) + f" | {c.mean_val:.4f} | {per} | "
                     f"{', '.join(str(e) for e in c.best_epoch.values())} | {'**chosen**' if i == sel.chosen else ''} |")
    ch = sel.candidates[sel.chosen]
    lines += ["", f"Chosen on validation: {', '.join(f'{k} = {v}' for k, v in ch.settings.items())}.",
              f"Test pair recall@{sel.k} of the chosen settings (held-out test items, {_mean(sel.n_test_pairs):.0f} pairs "
              f"per seed on average): {_mean(sel.test_recall):.4f} against the frozen encoder's "
              f"{_mean(sel.frozen_test_recall):.4f} ({_mean(sel.test_recall) / _mean(sel.frozen_test_recall):.2f}x; "
              f"per seed {', '.join(f'{sel.test_recall[s]:.4f}' for s in sel.seeds)})."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Entry point of `qarm-bench align-select`."""
    grid = parse_grid(args.grid)
    seeds = None
    if args.seeds:
        try:
            seeds = tuple(int(s) for s in args.seeds.split(","))
        except ValueError:
            raise ConfigError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
    import torch

    from benchmark.core.runlock import suite_lock

    cfg = load_config(args.config, args.overrides)
    torch.set_num_threads(cfg.threads)
    with suite_lock(cfg.suite_dir):  # it writes the suite's stage cache: one process at a time, as `run`
        sel = select(args.config, grid, args.overrides, seeds)
    md = render(sel)
    out = Path(cfg.suite_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "alignment_selection.json").write_text(json.dumps(to_plain(sel), indent=1))
    (out / "alignment_selection.md").write_text(md)
    print(json.dumps(to_plain(sel), indent=1) if args.json else md)
    return 0
