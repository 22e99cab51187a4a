"""Layer 3: MLflow — the store and runs (store), dashboards (dashboard), `qarm-bench ui` (ui)."""
