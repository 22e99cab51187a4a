"""QARM-Bench: quantitative alignment (QARM) for multi-modal recommendation, end to end.

The Python API (importing `benchmark` loads nothing heavy; torch comes in when a run needs it):

    import benchmark

    results = benchmark.run("synthetic-tiny", overrides=["rank.epochs=1"])   # -> SuiteResults
    results.cells[0].test["cold"]["auc"]
    plan = benchmark.plan("movielens-100k")          # -> SuitePlan: entries and cells, keys, cached or not
    again = benchmark.load_results("synthetic-tiny")  # -> SuiteResults of runs/<suite>/latest/results.json

`config` is a packaged suite name, a TOML path or a SuiteConfig; `overrides` are `--set` strings. Plugins
registered in your own code (`@benchmark.core.registry.RANKERS.register(...)`, docs/extending.md) are used by
`run` as soon as their module is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.core import __version__

if TYPE_CHECKING:
    from benchmark.config.suite import SuiteConfig
    from benchmark.core.records import SuiteResults
    from benchmark.engine.plan import SuitePlan

__all__ = ["__version__", "load_results", "plan", "run"]


def _configs(config: str | Path | SuiteConfig | None, overrides: Sequence[str], quick: bool) -> list[tuple[str, Any]]:
    from benchmark.config.suite import SuiteConfig, quicken, sweep_configs

    if isinstance(config, SuiteConfig):
        if overrides:
            raise TypeError("benchmark.run: overrides apply to a suite name or file; edit a SuiteConfig with "
                            "dataclasses.replace instead")
        return [("", quicken(config) if quick else config)]
    return sweep_configs(None if config is None else str(config), list(overrides), quick)


def run(config: str | Path | SuiteConfig | None = None, overrides: Sequence[str] = (), *, quick: bool = False,
        force: Sequence[str] = (), progress: bool = True) -> SuiteResults | dict[str, SuiteResults]:
    """Run a suite as `qarm-bench run` does (cache, MLflow, report) and return its results.

    A sweep suite returns {"key=value": SuiteResults} per sweep value. force: stages to recompute (and every
    stage after them). Errors in the config raise benchmark.core.errors.ConfigError before anything runs."""
    from benchmark.config.suite import SuiteConfig, invocation_overrides, load_config
    from benchmark.engine.suite import run_invocation

    runs = _configs(config, overrides, quick)
    base = config if isinstance(config, SuiteConfig) else load_config(None if config is None else str(config),
                                                                      list(overrides))
    out = run_invocation(runs, overrides=invocation_overrides(base, list(overrides), quick), quick=quick,
                         force=force, progress=progress)
    return out[""] if list(out) == [""] else out


def plan(config: str | Path | SuiteConfig | None = None, overrides: Sequence[str] = (), *,
         quick: bool = False) -> SuitePlan | dict[str, SuitePlan]:
    """What `run` would compute: every item-side entry and cell with its key and whether it is cached."""
    from benchmark.engine.plan import suite_plan

    plans = {label: suite_plan(cfg, label) for label, cfg in _configs(config, overrides, quick)}
    return plans[""] if list(plans) == [""] else plans


def load_results(suite: str | Path, runs_dir: str | Path = "runs", run_id: str | None = None) -> SuiteResults:
    """The results of a finished run: `suite` is a suite name under `runs_dir` (its latest complete run,
    runs/<suite>/latest), or a folder holding results.json; run_id: another run of the suite."""
    from benchmark.core.runs import resolve_run
    from benchmark.report.write import load_manifest

    folder = Path(suite)
    if run_id or not (folder / "results.json").exists():
        folder = resolve_run(Path(runs_dir) / str(suite), run_id)
    return load_manifest(folder)
