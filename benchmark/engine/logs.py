"""What a suite run logs to MLflow besides its report: the item side of every replicate and the primary family
on the parent run, and one child run per cell (its tags, parameters, per-epoch curve and final metrics)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmark.cells.plan import CellPlan
from benchmark.config.suite import SuiteConfig
from benchmark.core.configlib import flatten, stable_hash, to_plain
from benchmark.core.records import CellRecord, ItemSideRecord, epoch_metrics, to_json
from benchmark.report.primary import PrimaryFamily, PrimaryRecord, undetectable


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def log_item_side(parent: Any, data_stats: dict[str, Any], replicates: tuple[ItemSideRecord, ...]) -> None:
    """Data stats once; pair, alignment and code statistics of the first replicate under the plain names
    (`pairs_n_pairs`, `align_aligned_recall`, ...), and of every replicate with the suffix `_r<seed>` when
    the suite has several item-side replicates."""
    parent.log_dict(data_stats, "stats/data.json")
    numeric = {f"data_{k}": v for k, v in data_stats.items() if is_number(v)}
    suffixes = [(replicates[0], "")] + ([(r, f"_r{r.seed}") for r in replicates] if len(replicates) > 1 else [])
    for rep, sfx in suffixes:
        parent.log_dict(to_json(rep), f"stats/item_side{sfx}.json")
        numeric |= {f"pairs_{k}{sfx}": v for k, v in to_plain(rep.pair_stats).items() if is_number(v)}
        for cs in rep.code_sets:
            numeric |= {f"codes_{cs.name}_{k}{sfx}": v for k, v in cs.diagnostics.items() if is_number(v)}
        a = rep.alignment
        numeric |= {f"align_{k}{sfx}": v for k, v in (("frozen_recall", a.frozen_recall),
                                                       ("aligned_recall", a.aligned_recall),
                                                       ("best_epoch", a.best_epoch)) if is_number(v)}
        for h in a.history:
            parent.log_metrics({f"align_loss{sfx}": h.loss, f"align_val_recall{sfx}": h.val_recall}, step=h.epoch)
    parent.log_metrics(numeric)


def stage_keys_hash(stage_keys: dict[str, str]) -> str:
    """One tag for a replicate's item-side cache keys (the keys themselves: the parent's stage_keys.json)."""
    return stable_hash(dict(sorted(stage_keys.items())))


def log_stage_keys(parent: Any, keys_by_seed: dict[int, dict[str, str]]) -> None:
    """The item side's cache keys of every replicate in one artifact, `stage_keys.json` ({seed: {stage: key}}),
    and the first replicate's `stage_keys_hash` tag (the children carry their replicate's)."""
    parent.log_dict({str(seed): dict(sorted(k.items())) for seed, k in keys_by_seed.items()}, "stage_keys.json")
    first = next(iter(keys_by_seed.values()))
    parent.set_tags({"stage_keys_hash": stage_keys_hash(first)})


def cell_run_meta(cfg: SuiteConfig, plan: CellPlan, stage_keys: dict[str, str]) -> tuple[str, dict, dict]:
    """(child run name, params, tags) of a planned cell."""
    tags = {"variant": plan.variant, "model": plan.model, "seed": plan.seed, "cell_key": plan.key,
            "replicate_seed": plan.replicate_seed, "sim_search": plan.sim_search or "",
            "sim_search_codes": plan.sim_search_codes or "", "stage_keys_hash": stage_keys_hash(stage_keys)}
    params = {"variant": plan.variant, "model": plan.model, "seed": plan.seed,
              "quantizer": cfg.quantize.quantizer, **flatten(cfg.rank, "rank")}
    return f"{plan.model}/{plan.variant}/seed{plan.seed}", params, tags


def epoch_logger(child: Any) -> Callable[[int, dict[str, Any]], None]:
    """The on_epoch callback that logs a live cell's per-epoch metrics to its child run."""
    return lambda epoch, metrics: child.log_metrics(metrics, step=epoch)


def log_cell(child: Any, record: CellRecord, cached: bool, replay: bool) -> None:
    """A cell's final metrics on its child run; `replay`: its per-epoch curve too (a cell trained in a worker or
    loaded from the cache), so every invocation's child runs carry the curves."""
    if replay:
        for h in record.history:
            child.log_metrics(epoch_metrics(h), step=h.epoch)
    child.set_tags({"cached": str(cached).lower()})
    final = {f"test_{s}_{m}": v for s, ms in record.test.items() for m, v in ms.items()}
    final |= {f"best_val_{m}": v for m, v in record.val_best.items()}
    final |= {f"best_val_{s}_{m}": v for s, ms in record.val_slices.items() for m, v in ms.items()}
    child.log_metrics({**final, "best_epoch": record.best_epoch,
                       "n_embedding_parameters": record.n_embedding_parameters,
                       "n_dense_parameters": record.n_dense_parameters})


PRIMARY_FIELDS = ("delta", "ci_low", "ci_high", "p", "p_holm", "tost_p", "mde", "mde_low", "mde_high",
                  "replicates_needed", "target_effect", "bootstrap_delta", "bootstrap_ci_low", "bootstrap_ci_high",
                  "bootstrap_p")


def primary_metric_name(r: PrimaryRecord, what: str) -> str:
    """`primary_<model>_<slice>_<variant>_vs_<baseline>_<what>`: one parent-run metric per figure of a test."""
    return f"primary_{r.model}_{r.slice}_{r.variant}_vs_{r.baseline}_{what}"


def log_primary(parent: Any, family: PrimaryFamily) -> None:
    """The primary family on the parent run: its size and per test the delta, intervals, p values, MDE and
    replicates needed as metrics, a test's verdict as a tag (primary.json is logged with the report files)."""
    metrics: dict[str, Any] = {"primary_family_size": family.size, "primary_mde_alpha": family.mde_alpha,
                               "primary_undetectable_tests": len(undetectable(family))}
    for r in family.records:
        metrics |= {primary_metric_name(r, k): getattr(r, k) for k in PRIMARY_FIELDS
                    if is_number(getattr(r, k))}
    parent.log_metrics(metrics)
    parent.set_tags({f"primary.verdict.{r.model}.{r.slice}.{r.variant}_vs_{r.baseline}": r.verdict
                     for r in family.records} | {"primary.family_size": family.size})
