"""Item-side feature variants, chosen per benchmark cell by name: the one table of what each variant reads.
Imports no torch (the suite config validates variant names against it); `benchmark.cell` builds the features.

| variant           | item id | RQ codes | VQ codes | content vector | content source |
|-------------------|---------|----------|----------|----------------|----------------|
| id_only           | yes     |          |          |                |                |
| frozen_dense      | yes     |          |          | yes            | frozen encoder |
| frozen_codes      | yes     | yes      |          |                | frozen encoder |
| aligned_dense     | yes     |          |          | yes            | aligned        |
| aligned_codes     | yes     | yes      |          |                | aligned (QARM) |
| aligned_codes_vq  | yes     | yes      | yes      |                | aligned        |
| codes_only        | no      | yes      |          |                | aligned        |

The variant says which arrays are used; the caller passes the arrays of its `content_source`
(codes/dense from the frozen encoder or from the aligned one). Arrays a variant does not use are
ignored. codes_only has no item-id table, so every item, cold ones included, is scored from codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from benchmark.errors import ConfigError


@dataclass(frozen=True)
class Variant:
    """What a variant feeds the ranker: item-id table, RQ codes, VQ codes, content vector, and from which
    embedding (frozen encoder or aligned) its content comes."""

    name: str
    item_id: bool
    codes: bool
    vq: bool
    dense: bool
    content_source: Literal["frozen", "aligned"] | None
    description: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("id_only", True, False, False, False, None, "item/user ids only (baseline)"),
        Variant("frozen_dense", True, False, False, True, "frozen", "frozen encoder embedding as a dense feature"),
        Variant("frozen_codes", True, True, False, False, "frozen", "RQ codes of the frozen embedding"),
        Variant("aligned_dense", True, False, False, True, "aligned", "aligned embedding as a dense feature"),
        Variant("aligned_codes", True, True, False, False, "aligned", "RQ codes of the aligned embedding (QARM)"),
        Variant("aligned_codes_vq", True, True, True, False, "aligned", "RQ + VQ codes of the aligned embedding"),
        Variant("codes_only", False, True, False, False, "aligned", "aligned RQ codes, no item-id table"),
    )
}


ALL_VARIANTS: tuple[str, ...] = tuple(VARIANTS)
VariantName = Literal[ALL_VARIANTS]  # type: ignore[valid-type]  # the config loader checks names against it


def get_variant(name: str) -> Variant:
    """The variant named `name`; ConfigError naming the known ones otherwise."""
    if name not in VARIANTS:
        raise ConfigError(f"variant: unknown {name!r}; expected one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


