"""The progress bars of qarm's own loops (batches of the encoders, alignment epochs), drawn only when a caller passes
`progress=True`: tqdm bars on stderr that advance as the loop's steps are computed and nest under a bar the caller
has open. Inside one (the suite's item-side bar) tqdm gives such a bar the next free line below it and, with
leave=None, erases it when the loop ends, so the caller's display stays one block that does not scroll; opened on
its own, the bar stays on screen when it ends, as a standalone tqdm bar does."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def progress_bar(iterable: Iterable[T], progress: bool, desc: str, unit: str) -> Iterable[T]:
    """`iterable` itself when not `progress`; else wrapped in a nested-aware tqdm bar (see the module docstring)."""
    if not progress:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit=unit, leave=None, file=sys.stderr, dynamic_ncols=True)
