"""Layer 3: the item side — the stage table (stages), what each stage computes (compute), the runner."""
