"""`python -m benchmark` is the same as the `qarm-bench` console script."""

from __future__ import annotations

from benchmark.cli import entry

raise SystemExit(entry())
