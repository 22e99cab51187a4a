"""Typed user-facing errors of the benchmark. The CLI prints them in one or two lines and exits 2."""

from __future__ import annotations


class QarmBenchError(Exception):
    """Base of every error caused by user input (config, data, CLI arguments, tracking setup)."""


class ConfigError(QarmBenchError):
    """A config file or override is invalid. The message names the dotted path and what was expected."""


class DataError(QarmBenchError):
    """A data file is missing or malformed. The message names the file, line or column."""


class TrackingError(QarmBenchError):
    """The MLflow tracking store cannot be reached or written."""
