"""Item-side feature variants, chosen per benchmark cell by name: what each variant reads. Imports no torch (the
suite config validates variant names against the registry); `benchmark.cells.inputs` builds the features. A
plugin adds a variant with `VARIANTS.add(Variant(...))` or an entry point (docs/extending.md).

| variant          | item id | codes          | VQ bag  | content vector | other                                  |
|------------------|---------|----------------|---------|----------------|----------------------------------------|
| id_only          | yes     |                |         |                | the baseline                           |
| frozen_dense     | yes     |                |         | frozen         |                                        |
| frozen_codes     | yes     | frozen         |         |                |                                        |
| aligned_dense    | yes     |                |         | aligned        |                                        |
| aligned_codes    | yes     | aligned        |         |                | QARM                                   |
| aligned_codes_vq | yes     | aligned        | aligned |                | QARM's RQ + VQ codes                   |
| codes_only       | no      | aligned        |         |                | every item scored from its codes       |
| random_codes     | yes     | random         |         |                | control: capacity without content      |
| shuffled_codes   | yes     | shuffled       |         |                | control: the aligned codes, wrong items|
| metadata         | yes     |                |         |                | the dataset's categorical item fields  |
| metadata_aligned_codes | yes | aligned      |         |                | QARM on top of the metadata features   |

"codes" are the configured quantizer's codes (quantize.quantizer: RQ-Kmeans or RQ-VAE levels, or the VQ
top-k bag) of the frozen or the aligned embedding, fed as the configured tokenisation. The controls keep the
aligned codes' shape and vocabulary: random_codes draws every code uniformly (seeded by the replicate seed),
shuffled_codes permutes the aligned codes across items; both separate "the codes carry content" from "the
codes add embedding capacity".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from benchmark.core.registry import VARIANTS

Source = Literal["frozen", "aligned"]


@dataclass(frozen=True)
class Variant:
    """What a variant feeds the ranker. codes / vq / dense: from which embedding (frozen encoder or aligned) its
    codes, VQ top-k bag and content vector come (None = not used); control: a codes control ("random": uniform
    draws, "shuffled": permuted across items) built from the aligned codes; metadata: the dataset's
    categorical item fields (MovieLens: release year and genres)."""

    name: str
    item_id: bool
    codes: Source | None
    vq: Source | None
    dense: Source | None
    description: str
    control: Literal["random", "shuffled"] | None = None
    metadata: bool = False

    @property
    def content_source(self) -> Source | None:
        """The one embedding the variant's content features come from (None for id_only and metadata)."""
        return self.codes or self.vq or self.dense


# The built-in variants. Each is declared as an entry point of the group qarm_bench.variants in pyproject.toml
# (the door a plugin package uses too) and so reaches the registry benchmark.core.registry.VARIANTS.
ID_ONLY = Variant("id_only", True, None, None, None, "item/user ids only (baseline)")
FROZEN_DENSE = Variant("frozen_dense", True, None, None, "frozen", "frozen encoder embedding as a dense feature")
FROZEN_CODES = Variant("frozen_codes", True, "frozen", None, None, "codes of the frozen embedding")
ALIGNED_DENSE = Variant("aligned_dense", True, None, None, "aligned", "aligned embedding as a dense feature")
ALIGNED_CODES = Variant("aligned_codes", True, "aligned", None, None, "codes of the aligned embedding (QARM)")
ALIGNED_CODES_VQ = Variant("aligned_codes_vq", True, "aligned", "aligned", None,
                           "codes + VQ top-k bag of the aligned embedding")
CODES_ONLY = Variant("codes_only", False, "aligned", None, None, "aligned codes, no item-id table")
RANDOM_CODES = Variant("random_codes", True, "aligned", None, None, "control: uniform random codes, same shape and "
                       "vocabulary as the aligned codes", control="random")
SHUFFLED_CODES = Variant("shuffled_codes", True, "aligned", None, None,
                         "control: the aligned codes permuted across items", control="shuffled")
METADATA = Variant("metadata", True, None, None, None, "item id + the dataset's categorical item fields",
                   metadata=True)
METADATA_ALIGNED_CODES = Variant("metadata_aligned_codes", True, "aligned", None, None, "the metadata features + the "
                                 "aligned codes (QARM on top of what a peer library sees)", metadata=True)
BUILTIN_VARIANTS: tuple[str, ...] = (
    "id_only", "frozen_dense", "frozen_codes", "aligned_dense", "aligned_codes", "aligned_codes_vq", "codes_only",
    "random_codes", "shuffled_codes", "metadata", "metadata_aligned_codes")


def get_variant(name: str, setting: str = "suite.variants") -> Variant:
    """The variant registered as `name`; a ConfigError naming the setting, the registered ones and the closest
    one otherwise."""
    return VARIANTS.get_as(name, Variant, setting)


def find_variant(name: str) -> Variant | None:
    """The variant `name`, or None when nothing registers it (an old results file's unknown name)."""
    return get_variant(name) if name in VARIANTS else None
