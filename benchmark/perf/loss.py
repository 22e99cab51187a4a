"""`qarm-bench perf loss`: the in-batch InfoNCE of the two training loops, `info_nce_reference` (plain autograd over
dense (B, B) matrices) vs the fused `info_nce`, forward + backward, side by side in one run.

Call patterns (the training loops' own calls; temperatures are the configs' defaults):
- align (qarm/alignment/train.py `_epoch`): symmetric, normalize, anchor and positive ids (duplicates masked),
  both log_q corrections (strength 1: the log of each item's sampling probability);
- u2i (qarm/pairs/two_tower.py): one direction, no normalize (the towers emit unit vectors), PAD anchor ids (-1),
  positive ids, no log_q.
Data: (B, d) Gaussian embeddings (unit vectors for u2i), item ids drawn from a Zipf(`--zipf`) popularity over
`--items` items, so popular items repeat within a batch as in training. One batch per (pattern, B), seeded.
Timing: median wall time of `--steps` steps after `--warmup`, the two implementations alternating step by step so
that load from other processes falls on both alike; `--threads` torch threads. Agreement: max |loss diff| and max
|gradient diff| (anchors and positives) between the two on that batch, beside the largest gradient entry.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from benchmark.core.errors import QarmBenchError

PATTERNS = ("align", "u2i")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", default="512,4096", help="batch sizes B, comma-separated (default 512,4096)")
    parser.add_argument("--dim", type=int, default=64, help="embedding dim d (default 64)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per implementation (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--items", type=int, default=200_000, help="item catalogue the ids are drawn from")
    parser.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of item popularity (default 1.0)")
    parser.add_argument("--patterns", default=",".join(PATTERNS), help=f"comma-separated, of {', '.join(PATTERNS)}")
    parser.add_argument("--seed", type=int, default=0)


def _batch(pattern: str, b: int, args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, dict[str, object]]:
    """Anchors, positives (B, d) leaf tensors requiring grad, and the pattern's keyword arguments."""
    from qarm.alignment.config import AlignConfig
    from qarm.pairs.config import U2IConfig

    rng = np.random.default_rng([args.seed, b, PATTERNS.index(pattern)])
    popularity = 1.0 / np.arange(1, args.items + 1) ** args.zipf
    popularity /= popularity.sum()
    anchor_items, positive_items = (torch.from_numpy(rng.choice(args.items, b, p=popularity)) for _ in range(2))
    a, p = (torch.from_numpy(rng.standard_normal((b, args.dim), dtype=np.float32)) for _ in range(2))
    if pattern == "align":
        log_q = torch.from_numpy(np.log(popularity).astype(np.float32))
        kw: dict[str, object] = {
            "temperature": AlignConfig().temperature, "anchor_ids": anchor_items, "positive_ids": positive_items,
            "anchor_log_q": log_q[anchor_items], "positive_log_q": log_q[positive_items]}
    else:
        a, p = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(p, dim=-1)
        kw = {"temperature": U2IConfig().temperature, "anchor_ids": torch.full((b,), -1),
              "positive_ids": positive_items, "symmetric": False, "normalize": False}
    return a.requires_grad_(), p.requires_grad_(), kw


def _step(loss_fn: Callable[..., torch.Tensor], a: torch.Tensor, p: torch.Tensor,
          kw: dict[str, object]) -> tuple[float, torch.Tensor, tuple[torch.Tensor, ...]]:
    """Seconds of one forward + backward, the loss and the gradients wrt (anchors, positives)."""
    t0 = time.perf_counter()
    loss = loss_fn(a, p, **kw)
    grads = torch.autograd.grad(loss, (a, p))
    return time.perf_counter() - t0, loss.detach(), grads


def _masked(kw: dict[str, object]) -> int:
    """Off-diagonal masked entries, both directions of a symmetric loss counted."""
    from qarm.losses import duplicate_mask

    aid, pid = kw["anchor_ids"], kw["positive_ids"]
    n = int(duplicate_mask(aid, pid).sum())  # type: ignore[arg-type]
    return n + int(duplicate_mask(pid, aid).sum()) if kw.get("symmetric", True) else n  # type: ignore[arg-type]


def _choices(args: argparse.Namespace) -> tuple[list[str], list[int]]:
    patterns = args.patterns.split(",")
    if unknown := [x for x in patterns if x not in PATTERNS]:
        raise QarmBenchError(f"--patterns: unknown {unknown}; expected some of {','.join(PATTERNS)}")
    try:
        batches = [int(x) for x in args.batch.split(",")]
    except ValueError:
        batches = []
    if not batches or min(batches) < 2:
        raise QarmBenchError(f"--batch {args.batch!r}: expected comma-separated sizes >= 2, e.g. 512,4096")
    if args.steps < 1:
        raise QarmBenchError(f"--steps: expected >= 1, got {args.steps}")
    return patterns, batches


def measure(args: argparse.Namespace) -> dict[str, object]:
    from qarm.losses import info_nce, info_nce_reference

    patterns, batches = _choices(args)
    torch.set_num_threads(args.threads)
    rows = []
    for pattern in patterns:
        for b in batches:
            a, p, kw = _batch(pattern, b, args)
            times: dict[str, list[float]] = {"reference": [], "fused": []}
            for i in range(args.warmup + args.steps):
                for name, fn in (("reference", info_nce_reference), ("fused", info_nce)):
                    seconds, _, _ = _step(fn, a, p, kw)
                    if i >= args.warmup:
                        times[name].append(seconds)
            _, loss_ref, grads_ref = _step(info_nce_reference, a, p, kw)
            _, loss_fused, grads_fused = _step(info_nce, a, p, kw)
            ref_ms, fused_ms = (statistics.median(times[k]) * 1e3 for k in ("reference", "fused"))
            rows.append({
                "pattern": pattern, "batch": b, "masked_entries": _masked(kw),
                "reference_ms": round(ref_ms, 2), "fused_ms": round(fused_ms, 2), "speedup": round(ref_ms / fused_ms, 2),
                "loss": float(loss_ref), "max_loss_diff": float((loss_fused - loss_ref).abs()),
                "max_grad_diff": max(float((g - r).abs().max()) for g, r in zip(grads_fused, grads_ref)),
                "max_grad": max(float(r.abs().max()) for r in grads_ref)})
    return {"benchmark": "loss", "dim": args.dim, "threads": args.threads, "steps": args.steps,
            "warmup": args.warmup, "items": args.items, "zipf": args.zipf, "load_avg_1min": os.getloadavg()[0],
            "rows": rows}


def run(args: argparse.Namespace) -> int:
    result = measure(args)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"loss perf: info_nce_reference vs fused info_nce, forward + backward, d={args.dim}, {args.threads} "
          f"thread(s), median of {args.steps} steps after {args.warmup}; ids Zipf({args.zipf}) over {args.items:,} "
          f"items; load average (1 min) at the end {result['load_avg_1min']:.2f}")
    print(f"{'pattern':<8}{'B':>6}{'masked':>9}{'reference ms':>14}{'fused ms':>10}{'speed-up':>10}"
          f"{'max|loss diff|':>16}{'max|grad diff|':>16}{'max|grad|':>11}")
    for r in result["rows"]:  # type: ignore[union-attr]
        print(f"{r['pattern']:<8}{r['batch']:>6}{r['masked_entries']:>9,}{r['reference_ms']:>14.1f}"
              f"{r['fused_ms']:>10.1f}{r['speedup']:>10.2f}{r['max_loss_diff']:>16.1e}{r['max_grad_diff']:>16.1e}"
              f"{r['max_grad']:>11.1e}")
    return 0
