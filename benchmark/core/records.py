"""Typed records the suite passes between its layers and writes to disk: a cell's result, one replicate's
item side, and the manifest `runs/<suite>/results.json` that the report reads. Imports no torch.

Records are frozen dataclasses; `to_json` / `from_json` go through configlib's strict converter, so a renamed
or missing field fails loudly when a file is read instead of turning into a silent `None`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from benchmark.core.configlib import from_mapping, to_plain
from benchmark.core.errors import QarmBenchError
from qarm.alignment.config import AlignSummary
from qarm.pairs.records import PairStats

T = TypeVar("T")
SliceMetrics = dict[str, dict[str, float | None]]  # slice -> metric -> value (None = undefined, e.g. one class)


@dataclass(frozen=True)
class EpochRecord:
    """One training epoch of a cell: mean train loss, validation metrics (auc, gauc, logloss, n, n_pos)."""

    epoch: int
    train_loss: float
    val: dict[str, float | None]
    seconds: float
    samples_per_s: float


def epoch_metrics(h: EpochRecord) -> dict[str, float | None]:
    """The per-epoch metrics of a child run (train_loss, val_<metric>, epoch_seconds): the same names whether
    the cell trains live, in a worker or is replayed from the cache."""
    return {"train_loss": h.train_loss, **{f"val_{k}": v for k, v in h.val.items()}, "epoch_seconds": h.seconds}


@dataclass(frozen=True)
class CellRecord:
    """The result of one (variant, model, seed) cell: test metrics per slice at the best validation epoch.

    sim_search: the GSU a SIM cell used ("hard" or "soft"; None for other models); sim_search_codes: the code
    set the hard search matched on (None otherwise); n_embedding_parameters / n_dense_parameters: the ranker's
    table rows x D, and everything else; test_bootstrap: per slice, the user-level bootstrap interval of the
    test AUC (test-set uncertainty, see benchmark.cells.metrics.bootstrap_auc); replicate_seed: the item side's seed;
    split_seed: the data split's seed (data.split.seed, or the entry of data.split.seeds the cell ran under);
    val_slices: at the best epoch, {"cold": metrics and sizes} of the validation rows whose item has no train row
    (data.split.val_cold_item_frac draws such items; empty when validation has none)."""

    model: str
    variant: str
    seed: int
    key: str
    best_epoch: int
    val_best: dict[str, float | None]
    test: SliceMetrics
    history: tuple[EpochRecord, ...]
    sim_search: str | None = None
    sim_search_codes: str | None = None
    n_embedding_parameters: int = 0
    n_dense_parameters: int = 0
    test_bootstrap: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    replicate_seed: int = 0
    split_seed: int = 0
    val_slices: dict[str, dict[str, float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class CodeSetRecord:
    """Quality of one code set of one replicate: RQ-style diagnostics (qarm.diagnostics.CodeDiagnostics, as a
    plain table) or, for VQ top-k codes, k and the number of distinct neighbour ids."""

    name: str
    kind: str  # "rq" (levels x codebook) or "vq" (top-k neighbour bag)
    diagnostics: dict[str, Any]


@dataclass(frozen=True)
class ItemSideRecord:
    """What one replicate's item side produced: its seed, stage keys, pair stats, alignment summary, codes, and
    per code set the variants read, the token coverage of the cold test items under the suite's tokenisation
    (qarm.quantize.tokenize.TokenCoverage as a plain table); split_seed: the data split it was built on."""

    seed: int
    stage_keys: dict[str, str]
    pair_stats: PairStats
    alignment: AlignSummary
    code_sets: tuple[CodeSetRecord, ...]
    token_coverage: dict[str, dict[str, Any]] = field(default_factory=dict)
    split_seed: int = 0


@dataclass(frozen=True)
class Provenance:
    """Where a run's figures come from. environment: the hardware and math stack that computed them (CPU model,
    GPU, torch's BLAS / oneDNN build, thread counts, library versions; benchmark.engine.environment), as a plain
    table ({} in manifests written before it was recorded)."""

    config_hash: str
    git_sha: str
    dataset: str
    dataset_fingerprint: str
    split: str
    seeds: tuple[int, ...]
    date: str
    version: str
    environment: dict[str, Any] = field(default_factory=dict)
    split_seeds: tuple[int, ...] = ()


@dataclass(frozen=True)
class SuiteResults:
    """The manifest of a suite run (runs/<suite>/<run-id>/results.json), everything the report needs.

    run_id: the invocation's folder name (benchmark.core.runs; "" in manifests from before run folders);
    quick: run with --quick; overrides: every setting the invocation changed on the suite's file, dotted key ->
    value (each --set as given, then each setting --quick changed). primary: the primary family
    (benchmark.report.primary.PrimaryFamily as plain JSON: the declaration, m, and per test the paired t, Holm,
    TOST, verdict, MDE, replicates needed and the hierarchical bootstrap), computed by the engine at the end of
    the run because its bootstrap reads the cells' test rows; {} when the suite has none (or an older run). data_stats: the first split seed's data statistics; split_data_stats: every split seed's, by str(split seed) (the slice sizes of each draw of cold items)."""

    suite: str
    label: str
    variants: tuple[str, ...]
    models: tuple[str, ...]
    confidence: float
    provenance: Provenance
    config: dict[str, Any]
    data_stats: dict[str, Any]
    item_side: tuple[ItemSideRecord, ...]
    cells: tuple[CellRecord, ...]
    plots: tuple[str, ...] = ()
    run_id: str = ""
    quick: bool = False
    overrides: dict[str, str] = field(default_factory=dict)
    primary: dict[str, Any] = field(default_factory=dict)
    split_data_stats: dict[str, dict[str, Any]] = field(default_factory=dict)


def to_json(record: Any) -> Any:
    """The JSON form (dicts, lists, numbers, strings) of a record."""
    return to_plain(record)


def from_json(cls: type[T], data: Any, where: str | Path = "") -> T:
    """Rebuild a record from its JSON form; a mismatch names the file and the field."""
    try:
        return from_mapping(cls, data)
    except QarmBenchError as e:
        raise QarmBenchError(f"{where}: not a valid {cls.__name__} record: {e}") from None
