"""Item-side work split over ranks (qarm.ranks): frozen encoding and held-out recall on W = 2 and 3 ranks run as
threads of this process (a barrier-backed gather) equal the one-process result exactly, bit for bit. The real
2-process gloo run is tests/benchmark/test_ranks_distributed.py."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from torch import nn

from qarm.alignment.heldout import recall_at_k, references
from qarm.encoders import ImageEncoder, TextEncoder, item_features
from qarm.errors import QarmError
from qarm.ranks import Ranks, part_bounds


def on_threads(fn: Callable[[Ranks], Any], size: int) -> list[Any]:
    """fn(ranks) on `size` ranks, each a thread, whose gather is a real collective (every thread posts its
    object and waits for the others): [result of rank 0, ...]."""
    slots: list[Any] = [None] * size
    barrier = threading.Barrier(size, timeout=60)
    results: list[Any] = [None] * size
    errors: list[BaseException] = []

    def run(rank: int) -> None:
        def gather(obj: Any) -> list[Any]:
            slots[rank] = obj
            barrier.wait()
            out = list(slots)
            barrier.wait()  # nobody posts the next object before everyone has read this one
            return out

        try:
            results[rank] = fn(Ranks(rank, size, gather))
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_part_bounds_cover_every_row_once() -> None:
    for n in range(0, 12):
        for size in (1, 2, 3, 5):
            parts = [part_bounds(n, r, size) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1


def test_ranks_check_their_arguments() -> None:
    with pytest.raises(QarmError, match="rank 2 outside"):
        Ranks(2, 2, lambda x: [x, x])
    with pytest.raises(QarmError, match="needs a gather"):
        Ranks(0, 2)


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("chunk", [7, 2048])  # 15 chunks of queries; one chunk (the other ranks score none)
def test_heldout_recall_split_over_ranks_is_exact(size: int, chunk: int) -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(30, 6)).astype(np.float32)
    emb[5] = emb[6]  # ties, so the fractional tie credit is summed too
    a, b = rng.integers(0, 30, 50), rng.integers(0, 30, 50)
    bias = rng.random(30).astype(np.float32)
    one = (recall_at_k(emb, a, b, 5, chunk=chunk), recall_at_k(emb, a, b, 5, chunk=chunk, item_bias=bias))
    many = on_threads(lambda ranks: (recall_at_k(emb, a, b, 5, chunk=chunk, ranks=ranks),
                                     recall_at_k(emb, a, b, 5, chunk=chunk, item_bias=bias, ranks=ranks)), size)
    assert all(m == one for m in many)  # exact, on every rank


def test_references_split_over_ranks_are_exact() -> None:
    rng = np.random.default_rng(1)
    pairs = rng.integers(0, 40, (60, 2))
    sources = np.where(np.arange(60) % 3 == 0, "u2i", "i2i")
    embs = {"frozen": rng.normal(size=(40, 8)).astype(np.float32), "aligned": rng.normal(size=(40, 4)).astype(np.float32)}
    pop = rng.integers(0, 9, 40)
    one = references(pairs, sources, embs, k=5, popularity=pop)
    assert all(r == one for r in on_threads(lambda ranks: references(pairs, sources, embs, k=5, popularity=pop,
                                                                     ranks=ranks), 2))


def _png(path: Path, seed: int) -> str:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return str(path)


@pytest.mark.parametrize("size", [2, 3])
def test_frozen_encoding_split_over_ranks_is_exact(tiny_models: dict[str, Path], tmp_path: Path, size: int) -> None:
    """Each rank encodes a contiguous range of the one-process batches (text: length-sorted, 2 per batch), the
    rows are gathered in item order: the features of every rank equal one process's bit for bit."""
    texts = ["Toy Story (1995)", "", "a very long title " * 6, "Heat", "GoldenEye (1995) Action", "x", "Up", "",
             "The Matrix", "Alien (1979) Horror Sci-Fi"]
    paths = [_png(tmp_path / f"{i}.png", i) if i % 4 != 3 else None for i in range(len(texts))]
    text = TextEncoder(tiny_models["bert"], max_length=16, batch_size=2)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    image = ImageEncoder(conv, image_size=16, batch_size=3)
    one = item_features(texts, paths, text_encoder=text, image_encoder=image)
    for feats in on_threads(lambda ranks: item_features(texts, paths, text_encoder=text, image_encoder=image,
                                                        ranks=ranks), size):
        for m in ("text", "image"):
            assert np.array_equal(feats.features[m], one.features[m])
            assert np.array_equal(feats.present[m], one.present[m])
