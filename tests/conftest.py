"""Test-wide settings: one thread (OpenMP spin-waiting collapses on 2 busy cores) and no hub access."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

from hypothesis import HealthCheck, settings  # noqa: E402

# CI: no wall-clock deadlines on a loaded 2-core machine, and a fixed example sequence so a red run
# can be reproduced exactly. Locally hypothesis explores as usual.
settings.register_profile("ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
if os.environ.get("CI"):
    settings.load_profile("ci")
