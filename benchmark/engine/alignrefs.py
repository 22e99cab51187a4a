"""`qarm-bench align-refs`: alignment's references on one set of held-out pairs, as a table.

For a suite's first replicate it computes (or loads from the stage cache) data, pairs, frozen features and the
aligned embedding, draws the same held-out test pairs alignment drew (qarm.alignment.split_pairs, same seed),
and reports pair recall@k, overall and per pair source (U2I, Swing), of

    frozen      the frozen encoder's output
    aligned     the suite's validation-selected aligned embedding (under align.refit its codes are fitted on the
                refit's, which trained on these test pairs and so is not measured here)
    u2i         the U2I two-tower item-ID embeddings (collaborative reference)
    probe       with --probe-epochs N: the same text encoder fine-tuned end to end, all layers, for N epochs
                (qarm.alignment.probe_config); cached as stage "probe" (expensive: about an hour per epoch on
                MovieLens-100K on one busy CPU core)
    popularity  every query ranks the items by their training pair count

Writes runs/<suite>/alignment_references.{json,md} and prints the markdown (or the JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.config.suite import SuiteConfig, load_config, slice_hash
from benchmark.core import __version__
from benchmark.core.cache import StageCache
from benchmark.core.errors import ConfigError
from benchmark.core.records import from_json, to_json

STAGES_USED = ("data", "pairs", "frozen", "align")

EXAMPLES = """\
examples:
  qarm-bench align-refs                                        the default suite, without the probe
  qarm-bench align-refs movielens-100k --probe-epochs 3        with the content probe (slow: hours on a CPU)
  qarm-bench align-refs --set data.dataset=movielens-latest-small --set suite.name=ml-latest-small
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's flags (registered by benchmark.cli)."""
    p.add_argument("config", nargs="?", default=None, help="suite TOML or packaged name (default: movielens-100k)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field by its dotted path (repeatable)")
    p.add_argument("--probe-epochs", type=int, default=0, metavar="N",
                   help="also fine-tune the whole text encoder for N epochs: the content probe (0 = skip)")
    p.add_argument("--seed", type=int, default=None, help="item-side replicate seed (default: the suite's first)")
    p.add_argument("--json", action="store_true", help="print the record as JSON instead of the table")


def _probe(cfg: SuiteConfig, cache: StageCache, seed: int, keys: Any, side: dict[str, Any], epochs: int,
           device: Any) -> tuple[np.ndarray, str]:
    """The content probe's embeddings (N, H') and its description; cached as stage "probe"."""
    from qarm.alignment import AlignSummary, probe_config

    pcfg = probe_config(cfg.align, epochs)
    if "text" not in cfg.encoder.modalities:
        raise ConfigError("align-refs --probe-epochs: the probe fine-tunes the text encoder; encoder.modalities "
                          "has no 'text'")
    key = slice_hash({"probe": pcfg, "encoder": cfg.encoder}, keys.stages["data"], keys.stages["pairs"], str(seed),
                     version=__version__)
    path = cache.path("probe", key)
    if not cache.done("probe", key):
        from benchmark.itemside.compute import text_encoder_of
        from qarm.alignment import align

        enc = text_encoder_of(cfg.encoder, device)
        texts = side["data"].items["text"].to_list()
        t0 = time.monotonic()
        res = align(side["pairs"].pairs, texts=texts, text_encoder=enc, config=pcfg, seed=seed, progress=True,
                    device=device)
        with cache.writing("probe", key, {"instance": "", "seed": seed}) as tmp:
            np.save(tmp / "embeddings.npy", res.embeddings.astype(np.float32))
            (tmp / "summary.json").write_text(json.dumps(to_json(res.summary)))
            (tmp / "timing.json").write_text(json.dumps({"seconds": time.monotonic() - t0}))
    summary = from_json(AlignSummary, json.loads((path / "summary.json").read_text()), path / "summary.json")
    secs = json.loads((path / "timing.json").read_text())["seconds"]
    what = (f"content probe: the whole text encoder fine-tuned end to end, {epochs} epoch(s), encoder lr "
            f"{pcfg.encoder_lr:g}, head lr {pcfg.lr:g}; best validation epoch {summary.best_epoch} "
            f"({secs / 60:.0f} min)")
    return np.load(path / "embeddings.npy"), what


def compute_references(cfg: SuiteConfig, seed: int | None = None, probe_epochs: int = 0) -> Any:
    """The suite's AlignReferences on its alignment test pairs (see the module docstring)."""
    from benchmark.core.device import resolve_device
    from benchmark.data.preparation import data_key
    from benchmark.engine.plan import replicate_seeds
    from benchmark.itemside.runner import run_entry
    from benchmark.itemside.stages import BY_NAME, item_side_keys
    from qarm.alignment import describe_trained, references, split_pairs
    from qarm.alignment.heldout import pair_counts

    if probe_epochs < 0:
        raise ConfigError(f"--probe-epochs: expected an integer >= 0, got {probe_epochs}")
    rseed = replicate_seeds(cfg)[0] if seed is None else seed
    cache = StageCache(cfg.suite_dir / "artifacts")
    keys = item_side_keys(cfg, data_key(cfg.data), rseed)
    device = resolve_device(cfg.suite.device)  # the one place this command resolves suite.device
    side: dict[str, Any] = {}
    for name in STAGES_USED:
        t0 = time.monotonic()
        side[name], cached = run_entry(cfg, cache, rseed, BY_NAME[name], "", keys.key(name), side, device=device)
        if not cached:
            print(f"[{name}] computed in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    mined, n = side["pairs"], side["data"].n_items
    split = split_pairs(mined.pairs, n, cfg.align, rseed)  # the very split alignment drew (same seed)
    # the validation-selected model's embedding: a refit (align.refit) trained on these test pairs
    embs = {"frozen": side["frozen"].frozen_embeddings(), "aligned": side["align"].heldout}
    what = {"aligned": describe_trained(cfg.align, sorted(cfg.encoder.modalities))}
    if mined.u2i_item_embeddings is not None:
        embs["u2i"] = mined.u2i_item_embeddings
    if probe_epochs:
        embs["probe"], what["probe"] = _probe(cfg, cache, rseed, keys, side, probe_epochs, device)
    return references(split.test, split.test_source, embs, k=cfg.align.recall_k, split=split.how,
                      popularity=pair_counts(split.train, n), what=what)


def write_references(suite_dir: Path, refs: Any, title: str) -> str:
    """Write alignment_references.json / .md under suite_dir; returns the markdown."""
    from qarm.alignment import render_references

    md = f"# Alignment references: {title}\n\n" + render_references(refs)
    suite_dir.mkdir(parents=True, exist_ok=True)
    (suite_dir / "alignment_references.json").write_text(json.dumps(to_json(refs), indent=1))
    (suite_dir / "alignment_references.md").write_text(md)
    return md


def run(args: argparse.Namespace) -> int:
    """Entry point of `qarm-bench align-refs`."""
    cfg = load_config(args.config, args.overrides)
    import torch

    from benchmark.core.runlock import suite_lock

    torch.set_num_threads(cfg.threads)  # as `run` does: results repeat for a given thread count
    with suite_lock(cfg.suite_dir):  # it writes the suite's stage cache: one process at a time, as `run`
        refs = compute_references(cfg, args.seed, args.probe_epochs)
    title = f"{cfg.suite.name} ({cfg.data.dataset}, {cfg.data.split.kind} split)"
    md = write_references(cfg.suite_dir, refs, title)
    print(json.dumps(to_json(refs), indent=1) if args.json else md)
    return 0

