"""The suite config: one table per stage, each the config dataclass of the library that runs it.

    [suite]     SuiteSection: name, seeds, models, variants, runs_dir, tracking_uri, threads, sweep
    [data]      benchmark.config.data.DataConfig: dataset, root, split, history ...
    [pairs]     qarm.pairs.PairsConfig: sources, [pairs.u2i] U2IConfig, [pairs.swing] SwingConfig
    [encoder]   qarm.encoders.EncoderConfig: frozen item content encoders (text, image)
    [align]     qarm.alignment.AlignConfig: contrastive alignment of the encoder (QARM §3)
    [quantize]  qarm.quantize.QuantizeConfig: RQ-Kmeans / RQ-VAE codes and VQ top-k codes
    [rank]      recsys_models.config.TrainConfig: rankers and their training
    [report]    ReportConfig: confidence level

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


@dataclass(frozen=True)
class ReportConfig:
    """confidence: level of the intervals in the report (0.95 = 95% CI)."""

    confidence: float = 0.95

    def __post_init__(self) -> None:
        require(self, "confidence", 0.5 <= self.confidence < 1.0, "a level in [0.5, 1)")


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


def quicken(cfg: SuiteConfig) -> SuiteConfig:
    """--quick: the first seed only and fewer epochs, for a first look in a few minutes."""
    rep = dataclasses.replace
    q = cfg.quantize
    return rep(
        cfg,
        suite=rep(cfg.suite, seeds=cfg.suite.seeds[:1]),
        pairs=rep(cfg.pairs, u2i=rep(cfg.pairs.u2i, epochs=min(cfg.pairs.u2i.epochs, 3))),
        align=rep(cfg.align, epochs=min(cfg.align.epochs, 10)),
        quantize=rep(q, rq_vae=rep(q.rq_vae, epochs=min(q.rq_vae.epochs, 20))),
        rank=rep(cfg.rank, epochs=min(cfg.rank.epochs, 2)),
    )


def slice_hash(section: object, *upstream: str, version: str = "") -> str:
    """Stable hash of a config slice plus its upstream stage hashes and the package version."""
    return stable_hash(section, list(upstream), version)
