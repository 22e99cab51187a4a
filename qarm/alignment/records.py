"""Records of alignment's held-out evaluation: pair recall@k of several item embeddings on the same held-out
pairs, overall and per pair source, and its markdown table. Imports no torch.

    reference     what it measures
    frozen        the frozen encoder's output (the starting point)
    aligned       the aligned embedding (what the codes are fitted on)
    u2i           the U2I two-tower model's item-ID embeddings: the collaborative reference; a ceiling for the
                  U2I pairs only (they were mined in that very space), not for the Swing pairs
    popularity    every query ranks the items by their training pair count: how much of the pairs is popularity
    probe         the same text encoder fine-tuned end to end (all layers) with a fixed generous budget: how much
                  of the pairs' structure the item content can carry at all (opt-in, expensive)
"""

from __future__ import annotations

from dataclasses import dataclass

from qarm.errors import QarmError

SOURCES = ("u2i", "i2i")


@dataclass(frozen=True)
class PairRecall:
    """Held-out pair recall@k, both directions, overall and per pair source (None: no held-out pair of it);
    overall_ci95: the overall recall's 95% normal interval over the held-out pairs (the seeded sample's unit;
    qarm.alignment.heldout.recall_interval), None when not measured."""

    overall: float | None
    u2i: float | None = None
    i2i: float | None = None
    overall_ci95: tuple[float, float] | None = None

    def by_source(self, source: str) -> float | None:
        """The recall of one source ("u2i", "i2i") or "overall"."""
        if source not in ("overall", *SOURCES):
            raise QarmError(f"unknown pair source {source!r}; expected overall, {', '.join(SOURCES)}")
        return getattr(self, source)


@dataclass(frozen=True)
class ReferenceRow:
    """One embedding's recall on the held-out pairs. name: frozen | aligned | u2i | popularity | probe;
    what: how it was obtained, in words."""

    name: str
    what: str
    recall: PairRecall


@dataclass(frozen=True)
class AlignReferences:
    """Every reference on the same held-out pairs.

    k: recall@k; split: "item" (held-out items: their pairs never reach training, as for cold items) or
    "pair" (held-out pairs between items seen in training); n_pairs / n_pairs_u2i / n_pairs_i2i: held-out
    pairs evaluated; rows: one per reference (see the module docstring), in display order.
    """

    k: int
    split: str
    n_pairs: int
    n_pairs_u2i: int
    n_pairs_i2i: int
    rows: tuple[ReferenceRow, ...]

    def row(self, name: str) -> ReferenceRow | None:
        """The row called `name`, None when absent."""
        return next((r for r in self.rows if r.name == name), None)

    def gap_closed(self) -> float | None:
        """(aligned - frozen) / (probe - frozen), overall: the share of the content's headroom alignment
        reaches. None without a probe row, or when the probe does not beat frozen."""
        f, a, p = (self.row(n) for n in ("frozen", "aligned", "probe"))
        if f is None or a is None or p is None:
            return None
        fr, ar, pr = f.recall.overall, a.recall.overall, p.recall.overall
        if fr is None or ar is None or pr is None or pr <= fr:
            return None
        return (ar - fr) / (pr - fr)


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def render_references(refs: AlignReferences, title: str = "") -> str:
    """The references as a markdown table (one row per reference; overall, U2I-pair and Swing-pair recall@k and
    the ratio to frozen), with a heading line naming the split and the pair counts."""
    head = (f"{title + ': ' if title else ''}held-out pair recall@{refs.k}, split by {refs.split}; "
            f"{refs.n_pairs} pairs ({refs.n_pairs_u2i} U2I, {refs.n_pairs_i2i} Swing)")
    frozen = refs.row("frozen")
    base = frozen.recall.overall if frozen is not None else None
    lines = [head, "", f"| reference | recall@{refs.k} | 95% interval | U2I pairs | Swing pairs | × frozen | what |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in refs.rows:
        ratio = "–" if not base or r.recall.overall is None else f"{r.recall.overall / base:.2f}"
        ci = r.recall.overall_ci95
        interval = "–" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]"
        lines.append(f"| {r.name} | {_fmt(r.recall.overall)} | {interval} | {_fmt(r.recall.u2i)} | "
                     f"{_fmt(r.recall.i2i)} | {ratio} | {r.what} |")
    gap = refs.gap_closed()
    if refs.row("probe") is not None:
        lines += ["", "Share of the frozen-to-probe gap closed by alignment: "
                  + ("– (the probe does not beat frozen: the content is the limit)" if gap is None else f"{gap:.2f}")]
    return "\n".join(lines) + "\n"
