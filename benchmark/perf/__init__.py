"""Micro-benchmarks: `qarm-bench perf NAME [--json]`, each measured side by side with its alternative.

Each benchmark is a module `benchmark/perf/<name>.py` exposing

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int      # prints a table, or one JSON object with --json

and is listed in BENCHMARKS below. Modules are imported only when their benchmark runs.
"""

from __future__ import annotations

BENCHMARKS: dict[str, str] = {
    "quantize": "RQ-Kmeans fit/encode vs bare faiss k-means, and RQ-Kmeans vs RQ-VAE",
    "codes": "RQ-Kmeans vs +dedup, +FSQ last level, balanced k-means; token coverage per tokenisation",
    "encode": "item-embedding throughput vs sentence-transformers encode",
    "rank": "TorchRec DLRM samples/s vs plain nn.EmbeddingBag; SIM and DIN cost; the training loop with vs without "
            "TrainPipelineSparseDist; --nproc-per-node N: 1 vs N processes",
    "data": "synthetic data preparation at scale: wall time and peak memory",
    "loss": "in-batch InfoNCE forward + backward: info_nce_reference vs the fused info_nce, alignment and U2I calls",
    "scale": "the synthetic-scale suite at 1M/3M/10M interactions: wall time and peak memory per stage",
}
