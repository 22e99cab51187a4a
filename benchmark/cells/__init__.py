"""Layer 4: one (variant, model, seed) cell — its plan, inputs, training and metrics."""
