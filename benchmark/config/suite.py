"""The suite config: one table per stage, each the config dataclass of the library that runs it.

    [suite]     SuiteSection: name, seeds, models, variants, runs_dir, tracking_uri, threads, sweep
    [data]      benchmark.config.data.DataConfig: dataset, root, split, history ...
    [pairs]     qarm.pairs.PairsConfig: sources, [pairs.u2i] U2IConfig, [pairs.swing] SwingConfig
    [encoder]   qarm.encoders.EncoderConfig: frozen item content encoders (text, image)
    [align]     qarm.alignment.AlignConfig: contrastive alignment of the encoder (QARM §3)
    [quantize]  qarm.quantize.QuantizeConfig: RQ-Kmeans / RQ-VAE codes and VQ top-k codes
    [rank]      recsys_models.config.TrainConfig: rankers and their training
    [report]    ReportConfig: confidence level; [report.primary] the primary hypothesis, its margin, targets

Nothing is mirrored or translated: a stage receives its library's own dataclass. Every field is checked
when the file is loaded (types, ranges, and the cross-section rules of `_check_suite`), so a bad setting
fails with its dotted path before any stage runs. `load_config(path, overrides, quick)` is the only entry
point; loading imports neither torch nor torchrec.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from benchmark.config.data import DataConfig
from benchmark.config.variants import BUILTIN_VARIANTS
from benchmark.core.configlib import (
    apply_overrides,
    canonicalize,
    field_type,
    flatten,
    from_mapping,
    read_toml,
    stable_hash,
)
from benchmark.core.device import check_device_name
from benchmark.core.errors import ConfigError, require
from benchmark.core.registry import DATASETS, QUANTIZERS, RANKERS, VARIANTS
from qarm.alignment.config import AlignConfig
from qarm.encoders.config import EncoderConfig
from qarm.pairs.config import PairsConfig
from qarm.quantize.config import QuantizeConfig
from recsys_models.config import MODELS, TrainConfig

DEFAULT_SUITE = "movielens-100k"


@dataclass(frozen=True)
class SuiteSection:
    """name: the suite (its MLflow experiment and runs/<name>/ folder); seeds; models; variants; runs_dir;
    tracking_uri ("" = $MLFLOW_TRACKING_URI, else sqlite:///<runs_dir>/mlflow.db); description; sweep_key and
    sweep_values: an ablation sweep (the suite runs once per value with `--set <sweep_key>=<value>`, every
    value sharing one stage cache); threads: torch intra-op threads (0 = half the cores, at most 8);
    workers: cells trained at once, in that many processes of `threads` threads each (0 = auto: as many as
    the cores allow, at most 4; results are identical for any number of workers);
    replicate: what a seed replicates — "full": the whole pipeline (pair sampling, U2I, alignment, quantizers
    and rankers each take the seed; the split and the cold-item draw stay fixed by data.split.seed), "ranker":
    the rankers only (one item side for the suite, seeded by data.split.seed); device: where every stage
    computes, "auto" (CUDA when torch sees a GPU), "cpu", "cuda" or "cuda:N" (benchmark.core.device; the machine is
    checked at run start, not here: configs load without torch)."""

    name: str = DEFAULT_SUITE
    seeds: tuple[int, ...] = (0, 1, 2)
    models: tuple[str, ...] = MODELS
    variants: tuple[str, ...] = BUILTIN_VARIANTS
    runs_dir: str = "runs"
    tracking_uri: str = ""
    description: str = ""
    sweep_key: str = ""
    sweep_values: tuple[str, ...] = ()
    # OpenMP spin-waiting collapses when threads outnumber idle cores: on a shared 2-core machine one is fast.
    threads: int = 0
    workers: int = 0
    replicate: Literal["full", "ranker"] = "full"
    device: str = "auto"

    def __post_init__(self) -> None:
        require(self, "name", bool(self.name) and "/" not in self.name, "a non-empty name without '/'")
        require(self, "seeds", bool(self.seeds), "at least one seed")
        require(self, "seeds", len(set(self.seeds)) == len(self.seeds), "distinct seeds")
        require(self, "models", bool(self.models) and len(set(self.models)) == len(self.models),
                "a non-empty list of distinct models")
        require(self, "variants", bool(self.variants) and len(set(self.variants)) == len(self.variants),
                "a non-empty list of distinct variants")
        for name in self.models:  # registered rankers and variants (built-in or plugin), checked by key
            RANKERS.require(name, "suite.models")
        for name in self.variants:
            VARIANTS.require(name, "suite.variants")
        require(self, "sweep_values", bool(self.sweep_key) == bool(self.sweep_values),
                "sweep_key and sweep_values set together")
        require(self, "threads", self.threads >= 0, "an integer >= 0 (0 = auto)")
        require(self, "workers", self.workers >= 0, "an integer >= 0 (0 = auto)")
        require(self, "device", check_device_name(self.device), "'auto', 'cpu', 'cuda' or 'cuda:N'")


# QARM's claim as tests (issue 20): the aligned codes against the id-only ranker, the frozen codes and the two
# code controls. The one place these defaults live (benchmark.report.primary reads them).
DEFAULT_PRIMARY_CONTRASTS: tuple[str, ...] = (
    "aligned_codes - id_only", "aligned_codes - frozen_codes", "aligned_codes - random_codes",
    "aligned_codes - shuffled_codes")
PRIMARY_SLICES: tuple[str, ...] = ("all", "cold", "warm")


def parse_contrast(c: str | tuple[str, ...]) -> tuple[str, str] | None:
    """("variant", "baseline") of a declared contrast: a "variant - baseline" string or a [variant, baseline]
    pair; None when it is neither."""
    if isinstance(c, str):
        parts = c.split(" - ") if " - " in c else c.split("-")
        parts = [p.strip() for p in parts]
    else:
        parts = [str(p).strip() for p in c]
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


@dataclass(frozen=True)
class PrimarySection:
    """The primary hypothesis, declared before the run ([report.primary]): contrasts x slices x models are the
    tests of ONE Holm family (benchmark.report.primary). contrasts: "variant - baseline" strings or
    [variant, baseline] pairs (delta = variant - baseline, paired by seed); left at the default, the default
    contrasts whose two variants the suite runs (a suite without them has no primary family); declared, every
    name must be one of suite.variants. metric: the test metric (AUC); slices: of all / cold / warm; models:
    () = every model of the suite, else some of suite.models."""

    contrasts: tuple[str | tuple[str, ...], ...] = DEFAULT_PRIMARY_CONTRASTS
    metric: Literal["auc"] = "auc"
    slices: tuple[str, ...] = ("all", "cold")
    models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        pairs = [parse_contrast(c) for c in self.contrasts]
        require(self, "contrasts", bool(pairs) and all(p is not None for p in pairs),
                'a non-empty list of "variant - baseline" strings or [variant, baseline] pairs')
        require(self, "contrasts", all(a != b for a, b in pairs) and len(set(pairs)) == len(pairs),
                "distinct contrasts of two different variants")
        for a, b in pairs:
            VARIANTS.require(a, "report.primary.contrasts")
            VARIANTS.require(b, "report.primary.contrasts")
        require(self, "slices", bool(self.slices) and len(set(self.slices)) == len(self.slices)
                and all(s in PRIMARY_SLICES for s in self.slices), f"distinct slices of {PRIMARY_SLICES}")
        require(self, "models", len(set(self.models)) == len(self.models), "distinct models")

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """The declared contrasts as (variant, baseline) pairs."""
        return tuple(p for p in map(parse_contrast, self.contrasts) if p is not None)


def _default_targets() -> dict[str, float]:
    return {"all": 0.005, "cold": 0.01}


@dataclass(frozen=True)
class ReportConfig:
    """confidence: level of the intervals in the report (0.95 = 95% CI); primary: the primary hypothesis
    ([report.primary], PrimarySection); equivalence_margin: the TOST margin on delta AUC within which a primary
    contrast is called equivalent; target_effect: per primary slice, the delta AUC the power analysis sizes the
    replicates for; bootstrap_draws: draws of the hierarchical bootstrap of every primary contrast (>= 2000)."""

    confidence: float = 0.95
    primary: PrimarySection = field(default_factory=PrimarySection)
    equivalence_margin: float = 0.002
    target_effect: dict[str, float] = field(default_factory=_default_targets)
    bootstrap_draws: int = 2000

    def __post_init__(self) -> None:
        require(self, "confidence", 0.5 <= self.confidence < 1.0, "a level in [0.5, 1)")
        require(self, "equivalence_margin", 0 < self.equivalence_margin < 1, "a margin in (0, 1)")
        require(self, "target_effect", all(v > 0 for v in self.target_effect.values()), "effects > 0")
        require(self, "target_effect", all(s in self.target_effect for s in self.primary.slices),
                f"an effect for every slice of report.primary.slices {list(self.primary.slices)}")
        require(self, "bootstrap_draws", self.bootstrap_draws >= 2000, "an integer >= 2000")


@dataclass(frozen=True)
class SuiteConfig:
    suite: SuiteSection = field(default_factory=SuiteSection)
    data: DataConfig = field(default_factory=DataConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    rank: TrainConfig = field(default_factory=TrainConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self) -> None:
        _check_suite(self)

    @property
    def threads(self) -> int:
        if self.suite.threads:
            return self.suite.threads
        return max(1, min(8, (os.cpu_count() or 2) // 2))

    @property
    def workers(self) -> int:
        """Worker processes for the cells: suite.workers, or as many as the cores allow at `threads` each."""
        if self.suite.workers:
            return self.suite.workers
        return max(1, min(4, (os.cpu_count() or 1) // max(self.threads, 1)))  # auto: at most 4

    @property
    def runs_dir(self) -> Path:
        return Path(self.suite.runs_dir)

    @property
    def suite_dir(self) -> Path:
        return self.runs_dir / self.suite.name


def _check_suite(cfg: SuiteConfig) -> None:
    """Rules across sections, each reported with the dotted path of the field to change."""
    _check_primary(cfg)
    split = cfg.data.split
    if split.seed_pairing == "zipped" and len(split.seeds) != len(cfg.suite.seeds):
        raise ConfigError(f"data.split.seeds: seed_pairing = 'zipped' pairs split seed i with suite.seeds[i]; "
                          f"expected {len(cfg.suite.seeds)} split seeds (as many as suite.seeds), got "
                          f"{len(split.seeds)}")
    QUANTIZERS.require(cfg.quantize.quantizer, "quantize.quantizer")
    DATASETS.require(cfg.data.dataset, "data.dataset")  # a registered loader, built-in or plugin
    if cfg.encoder.kind == "synthetic" and cfg.align.trains_encoder(cfg.encoder.modalities):
        raise ConfigError("align.trainable_layers: encoder.kind = 'synthetic' has no encoder to fine-tune; "
                          "expected 0 (projection head only)")
    sim = cfg.rank.sim
    if "sim" in cfg.suite.models:
        if sim.prefix_depth > cfg.quantize.levels:
            raise ConfigError(f"rank.sim.prefix_depth: expected at most quantize.levels ({cfg.quantize.levels}): "
                              f"hard search compares that many code levels, got {sim.prefix_depth}")
        for name in ("top_k", "recent"):
            if getattr(sim, name) > cfg.data.history_len:
                raise ConfigError(f"rank.sim.{name}: expected at most data.history_len ({cfg.data.history_len}), "
                                  f"got {getattr(sim, name)}")


def _check_primary(cfg: SuiteConfig) -> None:
    """A declared primary hypothesis names only the suite's variants and models."""
    primary = cfg.report.primary
    if primary.contrasts != DEFAULT_PRIMARY_CONTRASTS:
        for i, pair in enumerate(primary.pairs):
            for name in pair:
                if name not in cfg.suite.variants:
                    raise ConfigError(f"report.primary.contrasts[{i}]: {name!r} is not one of suite.variants "
                                      f"({', '.join(cfg.suite.variants)})")
    for i, m in enumerate(primary.models):
        if m not in cfg.suite.models:
            raise ConfigError(f"report.primary.models[{i}]: expected one of suite.models "
                              f"({', '.join(cfg.suite.models)}), got {m!r}")


def primary_contrasts(cfg: SuiteConfig) -> tuple[tuple[str, str], ...]:
    """The contrasts of the suite's primary family: the declared ones, or (left at the default) the default
    contrasts whose two variants the suite runs; () when none is left."""
    pairs = cfg.report.primary.pairs
    if cfg.report.primary.contrasts == DEFAULT_PRIMARY_CONTRASTS:
        pairs = tuple(p for p in pairs if all(v in cfg.suite.variants for v in p))
    return pairs


def default_config_path() -> Path:
    """The packaged default suite, benchmark/configs/movielens-100k.toml."""
    return Path(str(resources.files("benchmark") / "configs" / f"{DEFAULT_SUITE}.toml"))


def packaged_configs() -> list[Path]:
    """Every packaged suite file (benchmark/configs/*.toml)."""
    return sorted(Path(str(resources.files("benchmark") / "configs")).glob("*.toml"))


def resolve_config_path(name_or_path: str | None) -> Path:
    """A path, or the name of a packaged suite ("movielens-100k", "synthetic-tiny", ...)."""
    if name_or_path is None:
        return default_config_path()
    p = Path(name_or_path)
    if p.exists() or p.suffix == ".toml" or "/" in name_or_path:
        return p
    packaged = Path(str(resources.files("benchmark") / "configs" / f"{name_or_path}.toml"))
    if packaged.exists():
        return packaged
    return p  # read_toml reports it as missing


def check_config_name(name_or_path: str | None) -> None:
    """A bare name that is neither a file nor a packaged suite: a ConfigError listing the packaged suites, with a
    did-you-mean."""
    if name_or_path is None or resolve_config_path(name_or_path).exists():
        return
    if Path(name_or_path).suffix == ".toml" or "/" in name_or_path:
        return  # a path: read_toml reports it as missing
    names = [c.stem for c in packaged_configs()]
    close = difflib.get_close_matches(name_or_path, names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(f"{name_or_path}: config file not found, nor a packaged suite; {hint}"
                      f"packaged suites: {', '.join(names)}")


def load_config(path: str | Path | None = None, overrides: tuple[str, ...] | list[str] = (),
                quick: bool = False) -> SuiteConfig:
    """Read a suite TOML strictly, apply `--set` overrides typed by their field, then `--quick`."""
    check_config_name(None if path is None else str(path))
    cfg_path = resolve_config_path(None if path is None else str(path))
    raw = read_with_extends(cfg_path)
    try:
        raw = apply_overrides(SuiteConfig, raw, list(overrides))
        cfg = from_mapping(SuiteConfig, raw)
        if cfg.suite.sweep_key:
            field_type(SuiteConfig, cfg.suite.sweep_key)  # a bad key fails now, not after the first value
        return quicken(cfg) if quick else cfg
    except ConfigError as e:
        raise ConfigError(f"{cfg_path}: {e}") from None


def read_with_extends(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A suite file may start with `extends = "movielens-100k"` (a packaged name, or a path relative to the
    file): its tables are deep-merged over the base's, so an ablation states only what it changes. Each file's
    deprecated flat keys are rewritten to their canonical place before merging."""
    raw = read_toml(path)
    base_name = raw.pop("extends", None)
    try:
        raw = canonicalize(SuiteConfig, raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    if base_name is None:
        return raw
    if not isinstance(base_name, str):
        raise ConfigError(f"{path}: extends: expected a string (a suite name or a path), got {base_name!r}")
    base_path = resolve_config_path(base_name)
    if not base_path.exists() and not base_path.is_absolute():
        base_path = path.parent / base_name
    if base_path.resolve() in _seen:
        raise ConfigError(f"{path}: extends: cycle through {base_path}")
    return _deep_merge(read_with_extends(base_path, (*_seen, path.resolve())), raw)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def sweep_configs(path: str | Path | None, overrides: tuple[str, ...] | list[str] = (),
                  quick: bool = False) -> list[tuple[str, SuiteConfig]]:
    """[(label, config)]: one per sweep value (label "key=value"), or [("", config)] without a sweep.
    Every value is loaded (and so checked) here, before anything runs."""
    base = load_config(path, overrides, quick)
    key = base.suite.sweep_key
    if not key:
        return [("", base)]
    return [(f"{key}={value}", load_config(path, [*overrides, f"{key}={value}"], quick))
            for value in base.suite.sweep_values]


def invocation_overrides(base: SuiteConfig, overrides: tuple[str, ...] | list[str] = (),
                         quick: bool = False) -> dict[str, str]:
    """What an invocation changed on the suite's file, dotted key -> value: each `--set KEY=VALUE` as given,
    then (with --quick) each setting quicken changed on `base` (the config loaded without --quick), with its
    new value. Recorded in the results and shown in the report header."""
    out = {}
    for item in overrides:
        key, _, value = item.partition("=")
        out[key.strip()] = value.strip()
    if quick:
        before, after = flatten(base), flatten(quicken(base))
        out.update({k: str(v) for k, v in after.items() if before.get(k) != v})
    return out


def quicken(cfg: SuiteConfig) -> SuiteConfig:
    """--quick: the first seed only and fewer epochs (U2I 3, alignment 10, RQ-VAE 20, rankers 1), for a first look
    in about a minute on the default suite (2 cores)."""
    rep = dataclasses.replace
    q = cfg.quantize
    split = cfg.data.split
    zipped = split.seed_pairing == "zipped" and split.seeds  # one seed: the first split with its replicate
    return rep(
        cfg,
        suite=rep(cfg.suite, seeds=cfg.suite.seeds[:1]),
        data=rep(cfg.data, split=rep(split, seeds=split.seeds[:1])) if zipped else cfg.data,
        pairs=rep(cfg.pairs, u2i=rep(cfg.pairs.u2i, epochs=min(cfg.pairs.u2i.epochs, 3))),
        align=rep(cfg.align, epochs=min(cfg.align.epochs, 10)),
        quantize=rep(q, rq_vae=rep(q.rq_vae, epochs=min(q.rq_vae.epochs, 20))),
        rank=rep(cfg.rank, epochs=min(cfg.rank.epochs, 1)),
    )


def split_seed_configs(cfg: SuiteConfig) -> list[tuple[int, SuiteConfig]]:
    """[(split seed, config)]: one per entry of data.split.seeds, each the suite with data.split.seed set to it
    and the list emptied (so its data entry is the very one a single-split suite of that seed has), and under
    data.split.seed_pairing = "zipped" suite.seeds cut to the replicate seed paired with it; or the one split
    of data.split.seed when the list is empty."""
    split = cfg.data.split
    if not split.seeds:
        return [(split.seed, cfg)]
    rep = dataclasses.replace
    one = [(s, rep(cfg, data=rep(cfg.data, split=rep(split, seed=s, seeds=(), seed_pairing="crossed"))))
           for s in split.seeds]
    if split.seed_pairing == "zipped":  # split seed i runs replicate seed i only
        return [(s, rep(c, suite=rep(c.suite, seeds=(r,)))) for (s, c), r in zip(one, cfg.suite.seeds)]
    return one


def slice_hash(section: object, *upstream: str, version: str = "") -> str:
    """Stable hash of a config slice plus its upstream stage hashes and the package version."""
    return stable_hash(section, list(upstream), version)
