"""`qarm-bench codes export SUITE --out DIR`: a suite's semantic IDs, for another system.

For every code set of every replicate the suite fitted it writes the item -> code table and the code set's
provenance, read from the stage cache (nothing is computed; a missing entry is an error naming `qarm-bench run`):

    DIR/
      manifest.json                 every file below with its sha256 and size, the suite and its config hash
      <replicate seed>/
        <code set>.parquet          item_id (the source id), item_idx (contiguous row 0..N-1), is_cold, and
                                    code_0..code_{L-1} Int64 (kind "rq"), or neighbour_0..neighbour_{k-1}: the
                                    item_id of each of the item's k VQ neighbours (kind "vq")
        <code set>.json             CodeSetProvenance: source, quantizer, L, K, vocab per level, tokenisation,
                                    seed, fit population, stage key, config slice, diagnostics

The stage keys come from the config alone (benchmark.itemside.stages.item_side_keys), so the same SUITE and
`--set` flags as `run` find the entries that run wrote. The folder is written in a temporary sibling and
renamed into place: a failed export leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.config.suite import SuiteConfig, load_config
from benchmark.core import __version__
from benchmark.core.cache import content_manifest, verify_entry
from benchmark.core.configlib import stable_hash, to_plain
from benchmark.core.errors import ArtifactError, ConfigError, DataError, OutputError

EXAMPLES = """\
examples:
  qarm-bench codes export movielens-100k --out ids/
  qarm-bench codes export synthetic-tiny --out ids/ --code-set aligned_rq_kmeans --runs-dir /data/runs
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `codes` command's sub-commands and flags (registered by benchmark.cli)."""
    sub = p.add_subparsers(dest="codes_command", metavar="SUBCOMMAND", required=True)
    e = sub.add_parser("export", help="write item id -> codes (parquet) and each code set's provenance (JSON)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    e.add_argument("config", metavar="SUITE", help="packaged suite name or suite TOML, as given to `run`")
    e.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty or absent)")
    e.add_argument("--code-set", default=None, metavar="NAME", help="export this code set only")
    e.add_argument("--runs-dir", default=None, metavar="DIR",
                   help="where the suite's runs live (default: the config's suite.runs_dir)")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, as given to `run` (repeatable)")
    e.add_argument("--quick", action="store_true", help="the suite as `run --quick` ran it")
    e.add_argument("--force", action="store_true", help="replace a non-empty DIR")


@dataclass(frozen=True)
class FitPopulation:
    """Which items a code set's quantizer saw: fitted_on = quantize.fit_on, "warm" (the codebooks were fitted on
    the items with a training impression, and every item, cold ones included, was encoded against them) or "all"
    (fitted on every item's source embedding, cold items included); a VQ bag fits nothing ("none"): every item's
    neighbours are searched among the `n_candidates` warm items."""

    fitted_on: str
    n_items: int
    n_cold: int
    neighbour_candidates: str | None = None
    n_candidates: int | None = None


@dataclass(frozen=True)
class CodeSetProvenance:
    """What a code set is and where it came from (DIR/<seed>/<code set>.json).

    levels: L, the code columns (a dedup suffix included) or k, the neighbours of a VQ bag; codebook_size: the
    K of the k-means / RQ-VAE levels (quantize.codebook_size capped at N), None for VQ; vocab_sizes: per
    level, each code_l lies in [0, vocab_sizes[l]) (an FSQ last level or a dedup suffix has its own), (N,) for VQ; tokens: quantize.tokens, how the suite's rankers tokenise RQ codes (None for VQ);
    upstream_keys: the cache keys of the entries the fit read."""

    suite: str
    code_set: str
    kind: str
    source: str
    quantizer: str
    modifiers: tuple[str, ...]
    levels: int
    codebook_size: int | None
    vocab_sizes: tuple[int, ...]
    columns: tuple[str, ...]
    tokens: dict[str, Any] | None
    replicate_seed: int
    fit_population: FitPopulation
    stage_key: str
    upstream_keys: dict[str, str]
    config_slice: dict[str, Any]
    dataset: str
    dataset_fingerprint: str
    config_hash: str
    version: str
    diagnostics: dict[str, Any]


@dataclass(frozen=True)
class Located:
    """One code set entry of one replicate in the stage cache."""

    seed: int
    name: str
    key: str
    path: Path
    upstream_keys: dict[str, str]


def rerun_hint(args: argparse.Namespace) -> str:
    """The `qarm-bench run` command that writes the entries this export reads."""
    sets = " ".join(f"--set {o}" for o in args.overrides)
    runs = f" --set suite.runs_dir={args.runs_dir}" if args.runs_dir else ""
    return f"qarm-bench run {args.config}{' --quick' if args.quick else ''}{(' ' + sets) if sets else ''}{runs}"


def check_entry(path: Path, what: str, hint: str) -> None:
    if not path.is_dir():
        raise ArtifactError(f"{what} has no cache entry at {path}; run `{hint}` first")
    problem = verify_entry(path)
    if problem is not None:
        raise ArtifactError(f"{what}: cache entry fails verification ({problem}); run `{hint}` to recompute it")


def locate(cfg: SuiteConfig, code_set: str | None, hint: str) -> tuple[Path, list[Located]]:
    """(the data entry, every requested code set entry of every replicate), each checked to be in the cache."""
    from benchmark.core.cache import StageCache
    from benchmark.data.preparation import data_key
    from benchmark.engine.plan import replicate_seeds
    from benchmark.itemside.stages import BY_NAME, item_side_keys, needed_code_sets

    names = needed_code_sets(cfg)
    if code_set is not None and code_set not in names:
        raise ConfigError(f"--code-set {code_set}: suite {cfg.suite.name} has no such code set; expected one of "
                          f"{', '.join(names)}")
    cache = StageCache(cfg.suite_dir / "artifacts")
    dkey = data_key(cfg.data)
    data_path = cache.path("data", dkey)
    check_entry(data_path, f"suite {cfg.suite.name}: the prepared data ({dkey})", hint)
    found = []
    for seed in replicate_seeds(cfg):
        keys = item_side_keys(cfg, dkey, seed)
        for name in names if code_set is None else (code_set,):
            path = cache.path("codes", keys.key("codes", name))
            check_entry(path, f"suite {cfg.suite.name}: code set {name} (replicate seed {seed})", hint)
            ups = {u: keys.key(u) for u in BY_NAME["codes"].inputs_of(name)}
            found.append(Located(seed, name, keys.key("codes", name), path, ups))
    return data_path, found


def code_frame(cs: Any, items: Any) -> Any:
    """The parquet table of one code set: item_id, item_idx, is_cold, then the code or neighbour columns."""
    import numpy as np
    import polars as pl

    n = items.height
    if cs.codes.shape[0] != n or not np.array_equal(items["item_idx"].to_numpy(), np.arange(n)):
        raise DataError(f"code set {cs.name}: {cs.codes.shape[0]} code rows for {n} items (item_idx 0..N-1 "
                        "expected); the cache entries disagree, rerun the suite with --force codes")
    out = items.select("item_id", "item_idx", "is_cold")
    if cs.kind == "vq":  # neighbour rows are item_idx: name them by their source ids
        ids = items["item_id"]
        return out.with_columns([ids.gather(cs.codes[:, j]).alias(f"neighbour_{j}") for j in range(cs.codes.shape[1])])
    return out.with_columns([pl.Series(f"code_{j}", cs.codes[:, j], dtype=pl.Int64) for j in range(cs.codes.shape[1])])


def provenance(cfg: SuiteConfig, loc: Located, cs: Any, data: Any, columns: list[str]) -> CodeSetProvenance:
    from benchmark.itemside.compute import code_quantize, code_slice, parse_code_set

    source, quantizer = parse_code_set(loc.name)
    n = data.n_items
    cold = data.items["is_cold"].to_numpy()
    if cs.kind == "vq":
        fit = FitPopulation("none", n, int(cold.sum()), "warm", int((~cold).sum()))
        k_fit, tokens = None, None
    else:
        q = code_quantize(cfg, loc.name)
        fit = FitPopulation(q.fit_on, n, int(cold.sum()))
        fitted = int((~cold).sum()) if q.fit_on == "warm" else n  # K is capped at the rows the fit saw
        k_fit, tokens = min(q.codebook_size, fitted), to_plain(cfg.quantize.tokens)
    return CodeSetProvenance(
        suite=cfg.suite.name, code_set=loc.name, kind=cs.kind, source=source, quantizer=quantizer,
        modifiers=tuple(loc.name.split(".")[1:]), levels=int(cs.codes.shape[1]), codebook_size=k_fit,
        vocab_sizes=cs.vocab_sizes, columns=tuple(columns), tokens=tokens, replicate_seed=loc.seed,
        fit_population=fit, stage_key=loc.key, upstream_keys=loc.upstream_keys,
        config_slice=to_plain(code_slice(cfg, loc.name)), dataset=data.name, dataset_fingerprint=data.fingerprint,
        config_hash=stable_hash(cfg), version=__version__, diagnostics=to_plain(cs.diagnostics))


def check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputError(f"--out {out}: folder is not empty; pass --force to replace it")


def export_codes(cfg: SuiteConfig, out: Path, *, code_set: str | None = None, force: bool = False,
                 hint: str = "") -> list[Path]:
    """Write the export folder `out` (see the module docstring); returns the files written, relative to it."""
    from benchmark.itemside.compute import load_codes, load_data
    from qarm.artifacts import atomic_directory

    check_out(out, force)
    data_path, found = locate(cfg, code_set, hint or f"qarm-bench run {cfg.suite.name}")
    data = load_data(data_path)
    with atomic_directory(out, replace=True) as tmp:
        for loc in found:
            cs = load_codes(loc.path)
            frame = code_frame(cs, data.items)
            (tmp / str(loc.seed)).mkdir(exist_ok=True)
            frame.write_parquet(tmp / str(loc.seed) / f"{loc.name}.parquet")
            prov = provenance(cfg, loc, cs, data, frame.columns[3:])
            (tmp / str(loc.seed) / f"{loc.name}.json").write_text(json.dumps(to_plain(prov), indent=1) + "\n")
        files = content_manifest(tmp)
        manifest = {"suite": cfg.suite.name, "config_hash": stable_hash(cfg), "version": __version__,
                    "seeds": sorted({loc.seed for loc in found}), "code_sets": list(dict.fromkeys(
                        loc.name for loc in found)), "files": files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return [Path(p) for p in files] + [Path("manifest.json")]


def run(args: argparse.Namespace) -> int:
    """Entry point of `qarm-bench codes export`."""
    overrides = [*args.overrides, *([f"suite.runs_dir={args.runs_dir}"] if args.runs_dir else [])]
    cfg = load_config(args.config, overrides, args.quick)
    out = Path(args.out)
    files = export_codes(cfg, out, code_set=args.code_set, force=args.force, hint=rerun_hint(args))
    print(f"wrote {len(files) - 1} files and manifest.json of suite {cfg.suite.name} to {out}")
    return 0
