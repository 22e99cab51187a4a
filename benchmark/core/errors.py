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


class FieldError(ConfigError):
    """An invalid config field of a benchmark section; `field` names it so the loader can print the dotted path."""

    def __init__(self, owner: str, field: str, detail: str) -> None:
        self.field = field
        self.detail = detail
        super().__init__(f"{owner}.{field}: {detail}")


def require(owner: object, field: str, ok: bool, expected: str) -> None:
    """Raise FieldError(`<Owner>.<field>: expected <expected>, got <value>`) unless `ok`."""
    if not ok:
        raise FieldError(type(owner).__name__, field, f"expected {expected}, got {getattr(owner, field)!r}")


class ArtifactError(QarmBenchError):
    """A stage cache entry a command reads without computing it is missing or fails verification; the message
    names the command that writes it."""


class OutputError(QarmBenchError):
    """An output path cannot be written as asked (a file, or a non-empty folder without --force)."""
