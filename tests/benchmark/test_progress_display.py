"""Issue 23: one progress display. The item side's encoding and alignment bars nest under the replicate's item-side
bar (the next line, erased when they end) instead of scrolling as bars of their own; without progress (`--quiet`)
nothing is written at all."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from qarm.progress import progress_bar


def screen(stream: str) -> list[str]:
    """What a terminal shows after `stream`: carriage returns, newlines and tqdm's cursor-up escape are applied,
    text overwrites what is under it."""
    rows: list[list[str]] = [[]]
    r = c = 0
    i = 0
    while i < len(stream):
        if stream.startswith("\x1b[A", i):
            r, i = max(r - 1, 0), i + 3
            continue
        ch = stream[i]
        if ch == "\r":
            c = 0
        elif ch == "\n":
            r, c = r + 1, 0
            while len(rows) <= r:
                rows.append([])
        else:
            row = rows[r]
            row.extend(" " * (c + 1 - len(row)))
            row[c] = ch
            c += 1
        i += 1
    return [line for line in ("".join(row).rstrip() for row in rows) if line]


def test_an_inner_bar_nests_below_an_open_bar_and_is_erased(monkeypatch: pytest.MonkeyPatch) -> None:
    from tqdm import tqdm

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    outer = tqdm(total=2, desc="outer", file=sys.stderr)
    inner = progress_bar(range(3), True, "inner", "step")
    assert isinstance(inner, tqdm) and inner.pos == 1 and inner.leave is None  # the line below; erased at the end
    assert list(inner) == [0, 1, 2]
    outer.update(2)
    outer.close()
    assert "inner:" in err.getvalue()  # it was drawn
    final = screen(err.getvalue())
    assert len(final) == 1 and final[0].startswith("outer: 100%")


def test_a_bar_on_its_own_stays_and_no_progress_is_no_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert list(progress_bar(range(3), True, "alone", "step")) == [0, 1, 2]
    assert [line.split("|")[0].strip() for line in screen(err.getvalue())] == ["alone: 100%"]
    plain = range(3)
    assert progress_bar(plain, False, "x", "step") is plain


@pytest.mark.slow  # the real MiniLM text encoder
def test_the_item_side_draws_one_display(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With progress on, the frozen encoding and the alignment epochs are drawn (nested) while they run, and what
    stays on screen is the status lines and the item-side bar only: no standalone bar lines. With progress off,
    nothing is written."""
    from benchmark.config.suite import load_config
    from benchmark.core.cache import StageCache
    from benchmark.data.preparation import data_key
    from benchmark.itemside.runner import run_item_side
    from benchmark.itemside.stages import item_side_keys

    cfg = load_config("synthetic-tiny", [f"suite.runs_dir={tmp_path}", "align.epochs=2", "pairs.u2i.epochs=1",
                                         "quantize.rq_vae.epochs=2"])
    keys = item_side_keys(cfg, data_key(cfg.data), 0)
    run_item_side(cfg, StageCache(tmp_path / "a"), keys, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "encode text:" in captured.err and "align:" in captured.err  # the inner bars ran
    final = screen(captured.err)
    bars = [line for line in final if not line.startswith("[")]
    assert len(bars) == 1 and bars[0].startswith("item side (seed 0): ")
    assert [line[1:].split("]")[0].strip() for line in final if line.startswith("[")][:4] == \
        ["data", "pairs", "frozen", "align"]
    assert not any(line.startswith(("encode text", "align:", "cache ")) for line in final)

    run_item_side(cfg, StageCache(tmp_path / "b"), keys, progress=False)  # `--quiet`: nothing at all
    assert capsys.readouterr() == ("", "")
