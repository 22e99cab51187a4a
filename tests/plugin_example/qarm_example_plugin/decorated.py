"""The other door: a quantizer registered by decorator in the user's own code (no entry point, no install).
Import this module before loading a config that names it (`benchmark.run` then finds it; the suite's worker
processes import it again)."""

from __future__ import annotations

import dataclasses

from benchmark.core.registry import QUANTIZERS
from benchmark.itemside.quantizers import RQ_KMEANS, FitContext, Fitted, QuantizerSpec


def fit(x, q, ctx: FitContext) -> Fitted:
    """RQ-Kmeans with half the codebook at every level: coarser codes, more items per code."""
    return RQ_KMEANS.fit(x, dataclasses.replace(q, codebook_size=max(2, q.codebook_size // 2)), ctx)


COARSE_RQ = QUANTIZERS.register("coarse_rq")(
    QuantizerSpec("coarse_rq", "rq", fit, lambda q: {"quantizer": "coarse_rq", "levels": q.levels,
                                                     "codebook_size": q.codebook_size, "niter": q.niter},
                  "RQ-Kmeans with half the codebook"))
