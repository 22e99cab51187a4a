"""QARM-Bench orchestration: CLI, config, data, stage DAG, training, metrics, tracking, report."""

from __future__ import annotations

from benchmark.core import __version__  # noqa: F401  (re-exported)
