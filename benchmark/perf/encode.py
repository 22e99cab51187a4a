"""`qarm-bench perf encode`: item-embedding throughput of qarm's TextEncoder against
sentence-transformers' `SentenceTransformer(path).encode` on the same model (default: the packaged
all-MiniLM-L6-v2), the same synthetic titles, the same max length and batch size, in one run.
Target: ratio (TextEncoder items/s over sentence-transformers items/s) >= 1.0. Also reports the max
absolute difference of the two embedding matrices (both L2-normalised).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

WORDS = ["love", "war", "star", "night", "city", "river", "king", "dark", "summer", "house", "man", "woman", "story", "dead", "life", "blue", "return", "secret", "last", "first", "american", "little", "big", "great", "lost", "wild", "girl", "boy", "heart", "time", "game", "world", "death"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=2000, help="synthetic titles to encode (default 2000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per forward, both sides (default 64)")
    parser.add_argument("--max-length", type=int, default=64, help="tokens kept per text, both sides (default 64)")
    parser.add_argument("--model", default=None, help="model directory (default: packaged all-MiniLM-L6-v2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side, alternating; the best is kept (default 3)")
    parser.add_argument("--seed", type=int, default=0)


def synthetic_titles(n: int, seed: int) -> list[str]:
    """Movie-like titles of 1..30 words (skewed short), some with a year and genres."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(1 + rng.geometric(0.15, size=n), 30)
    out = []
    for k in lengths:
        words = " ".join(rng.choice(WORDS, size=k)).title()
        out.append(f"{words} ({rng.integers(1930, 2000)})" if rng.random() < 0.7 else words)
    return out


def _timed(fn) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _interleaved(a, b, repeats: int) -> tuple[float, np.ndarray, float, np.ndarray]:
    """Best-of-`repeats` wall time of a and b, run alternately so a noisy shared machine hits both."""
    ta = tb = float("inf")
    for _ in range(repeats):
        t, ea = _timed(a)
        ta = min(ta, t)
        t, eb = _timed(b)
        tb = min(tb, t)
    return ta, ea, tb, eb


def run(args: argparse.Namespace) -> int:
    import torch
    from sentence_transformers import SentenceTransformer

    from qarm.encoders import TextEncoder, default_text_model_path

    torch.set_num_threads(args.threads)
    path = str(args.model or default_text_model_path())
    texts = synthetic_titles(args.n, args.seed)
    ours = TextEncoder(path, max_length=args.max_length, batch_size=args.batch_size)
    st_model = SentenceTransformer(path, device="cpu")
    st_model.max_seq_length = args.max_length
    warm = texts[: min(64, len(texts))]
    ours.encode(warm)
    st_model.encode(warm, batch_size=args.batch_size)
    t_ours, e_ours, t_st, e_st = _interleaved(
        lambda: ours.encode(texts),
        lambda: st_model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True),
        args.repeats,
    )
    res = {
        "benchmark": "encode", "model": path, "n_items": args.n, "threads": args.threads,
        "batch_size": args.batch_size, "max_length": args.max_length, "repeats": args.repeats,
        "qarm_seconds": t_ours, "sentence_transformers_seconds": t_st,
        "qarm_items_per_s": args.n / t_ours, "sentence_transformers_items_per_s": args.n / t_st,
        "ratio": t_st / t_ours, "target_ratio": 1.0,
        "max_abs_diff": float(np.abs(e_ours - e_st).max()),
    }
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"encode {args.n} synthetic titles, {path}, {args.threads} thread(s), batch {args.batch_size}, "
          f"max_length {args.max_length}, best of {args.repeats}")
    print(f"  {'encoder':<28}{'seconds':>10}{'items/s':>12}")
    print(f"  {'qarm TextEncoder':<28}{t_ours:>10.2f}{res['qarm_items_per_s']:>12.0f}")
    print(f"  {'sentence-transformers':<28}{t_st:>10.2f}{res['sentence_transformers_items_per_s']:>12.0f}")
    print(f"  ratio {res['ratio']:.2f}x (target >= 1.0), max |diff| {res['max_abs_diff']:.2e}")
    return 0
