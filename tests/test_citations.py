"""Nothing in the repository cites a file that is not in it: every repository path named in the docs, the
README, code comments and docstrings (`benchmark/engine/suite.py`, `docs/extending.md`, markdown links) exists,
and no text cites a file kept outside the repository (DESIGN.md)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = ("benchmark", "qarm", "recsys_models", "tests", "docs", "scripts", "datasets", ".ci")
# a repository path: one of the top folders, then path characters, ending in a file extension or a slash
PATH = re.compile(r"(?<![\w./-])((?:" + "|".join(re.escape(t) for t in TOP) +
                  r")/[\w./-]*?[\w-](?:\.(?:py|md|toml|sh|png|json|txt)|/))(?![\w/])")
LINK = re.compile(r"\]\((?!https?:|#|mailto:)([^)#\s]+)")
SKIP = {"tests/test_citations.py"}
GENERATED = ("runs/", "raw/", "datasets/<")


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / p for p in out.stdout.split() if p not in SKIP]


def cited(text: str) -> set[str]:
    return {m.group(1) for m in PATH.finditer(text) if "<" not in m.group(1) and "*" not in m.group(1)}


def missing_citations() -> list[str]:
    bad = []
    for f in tracked("*.py", "*.md", "*.toml", "*.sh", "Makefile", ".ci/run"):
        text = f.read_text(encoding="utf-8", errors="replace")
        rel = f.relative_to(ROOT)
        for p in sorted(cited(text)):
            if any(g in p for g in GENERATED) or p.startswith("datasets/") and "/raw" in p:
                continue
            if not (ROOT / p).exists():
                bad.append(f"{rel}: {p}")
        if f.suffix == ".md":
            for link in LINK.findall(text):
                target = (f.parent / link).resolve()
                if not target.exists():
                    bad.append(f"{rel}: link {link}")
        if "DESIGN.md" in text:
            bad.append(f"{rel}: cites DESIGN.md, which is not in the repository")
    return bad


def test_every_cited_repository_path_exists() -> None:
    bad = missing_citations()
    assert not bad, f"{len(bad)} citation(s) of files not in the repository:\n" + "\n".join(bad)


def test_the_path_finder_finds_paths() -> None:
    text = "see benchmark/engine/suite.py and [x](docs/nope.md), `tests/qarm/` but not mybenchmark/x.py"
    assert cited(text) == {"benchmark/engine/suite.py", "docs/nope.md", "tests/qarm/"}
    assert LINK.findall(text) == ["docs/nope.md"]
