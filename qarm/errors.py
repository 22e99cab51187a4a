"""Errors raised by the item-side library on bad input (shapes, missing files, invalid settings)."""

from __future__ import annotations


class QarmError(ValueError):
    """A user-facing error of the qarm library: names the argument, file or key and what was expected."""
