"""Errors raised by the item-side library on bad input (shapes, missing files, invalid settings)."""

from __future__ import annotations


class QarmError(ValueError):
    """A user-facing error of the qarm library: names the argument, file or key and what was expected."""


class QarmConfigError(QarmError):
    """An invalid config field. `field` names it, so a suite loader can prefix its TOML section
    (`align.batch_size: must be >= 2 ...`); standalone, the message reads `AlignConfig.batch_size: ...`."""

    def __init__(self, owner: str, field: str, detail: str) -> None:
        self.field = field
        self.detail = detail
        super().__init__(f"{owner}.{field}: {detail}")


def require(owner: object, field: str, ok: bool, expected: str) -> None:
    """Raise QarmConfigError(`<Owner>.<field>: expected <expected>, got <value>`) unless `ok`."""
    if not ok:
        value = getattr(owner, field)
        raise QarmConfigError(type(owner).__name__, field, f"expected {expected}, got {value!r}")
