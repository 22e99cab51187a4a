"""Dataset cards, datasets/<card>/card.toml: read by the registry (sha256, default split) and by the
loaders (the text encoding of each raw file).

Encoding: a `[[files]]` entry's `encoding` for that file name, else the card's top-level `encoding`;
the loader's own default only when the card is absent (an installed wheel has no datasets/ folder)
or silent. GroupLens's .dat files and ML-100K's u.item are latin-1; everything else is UTF-8.
"""

from __future__ import annotations

import codecs
import tomllib
from pathlib import Path

from benchmark.core.errors import ConfigError

DATASETS_DIR = Path(__file__).resolve().parents[2] / "datasets"


def card_path(card: str) -> Path:
    return DATASETS_DIR / card / "card.toml"


def load(card: str) -> dict:
    """The card's TOML as a dict ({} when the repository's datasets/ folder is not around)."""
    path = card_path(card)
    if not path.exists():
        return {}
    with path.open("rb") as f:
        return tomllib.load(f)


def encoding(card: str, file_name: str, default: str) -> str:
    """The text encoding the card declares for `file_name` (see the module docstring)."""
    c = load(card)
    declared = next((f.get("encoding") for f in c.get("files", []) if f.get("name") == file_name
                     and f.get("encoding")), None) or c.get("encoding") or default
    try:
        codecs.lookup(declared)
    except LookupError:
        raise ConfigError(f"{card_path(card)}: encoding {declared!r} (for {file_name}) is not a known "
                          "text encoding; expected e.g. \"utf-8\" or \"latin-1\"") from None
    return declared
