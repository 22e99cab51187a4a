"""Errors raised by the rankers on bad input (feature specs, batch layouts, settings)."""

from __future__ import annotations


class RecsysModelError(ValueError):
    """A user-facing error of recsys_models: names the feature or argument and what was expected."""


class RankConfigError(RecsysModelError):
    """An invalid config field. `field` names it, so a suite loader can prefix its TOML section
    (`rank.sim.top_k: must be > 0 ...`); standalone, the message reads `SimConfig.top_k: ...`."""

    def __init__(self, owner: str, field: str, detail: str) -> None:
        self.field = field
        self.detail = detail
        super().__init__(f"{owner}.{field}: {detail}")


def require(owner: object, field: str, ok: bool, expected: str) -> None:
    """Raise RankConfigError(`<Owner>.<field>: expected <expected>, got <value>`) unless `ok`."""
    if not ok:
        value = getattr(owner, field)
        raise RankConfigError(type(owner).__name__, field, f"expected {expected}, got {value!r}")
