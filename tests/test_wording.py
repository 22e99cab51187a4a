"""The project's prose never calls an inconclusive difference "level", "equal" or "no effect" (issue 20): a
difference that is not significant is inconclusive unless TOST shows it equivalent (docs/results.md)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BANNED = re.compile(r"\b(are|is|were|was) (level|equal)\b|\bno effect\b|\blevel on every\b", re.IGNORECASE)


def test_no_text_reads_an_inconclusive_difference_as_none() -> None:
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob(
        "*.md"))] for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if BANNED.search(line)]
    assert not hits, "\n".join(hits)
