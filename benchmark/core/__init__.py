"""Layer 0 of benchmark/: what every other layer may use and nothing here imports from above it.

errors (typed user errors), configlib (strict TOML -> frozen dataclasses, stable hashes), cache (the stage
cache and its one load-or-compute path), records (typed records written to disk), device (suite.device ->
torch.device), runlock (one process per suite), world (the distributed World object), registry (plugin
registries: decorator + entry points).
"""

from __future__ import annotations

__version__ = "0.1.0"
