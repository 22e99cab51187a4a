"""QARM-Bench orchestration: CLI, config, data, stage DAG, training, metrics, tracking, report."""

from __future__ import annotations

__version__ = "0.1.0"
