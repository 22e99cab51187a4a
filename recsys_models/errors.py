"""Errors raised by the rankers on bad input (feature specs, batch layouts)."""

from __future__ import annotations


class RecsysModelError(ValueError):
    """A user-facing error of recsys_models: names the feature or argument and what was expected."""
