"""Layer 5 (engine): running a suite — the orchestrating SuiteRun, one cell train-or-load, the worker pool, plan."""
