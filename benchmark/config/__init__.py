"""Layer 1: the suite config (config.suite) and the variant registry (config.variants)."""
