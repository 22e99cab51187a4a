"""`qarm-bench perf rank`'s pipeline rows: the training loop with and without TorchRec's TrainPipelineSparseDist.

For DLRM, DIN and SIM, sharded as the training loop shards them (DistributedModelParallel(RankerTrain(ranker)),
`--sharding`, one gloo process) and built twice from the same seed, the two copies train on the same batches
through benchmark.cells.pipeline.run_batches, the one batch after batch ("plain"), the other through
TrainPipelineSparseDist ("sparse_dist"), taking turns step by step so that load from other processes falls on
both alike; timing: median of `--steps` steps after `--warmup`. Then each scores the same held-out batches in
eval mode under torch.no_grad (the pipelined copy through its pipeline), and the figures of the two are compared:
every step's loss, the final loss, the predictions and their AUC. On CPU the pipeline runs the same operations in
the same order, so they are expected EQUAL to the bit (`tests/benchmark/test_pipeline.py` asserts it); the
verdict says "equal to the bit", "within 1e-6" (TOL) or "DIFFER". On CPU there are no CUDA streams to overlap
the copies and the input distribution with: the pipeline's samples/s shows its bookkeeping cost, not the GPU
overlap it exists for.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import numpy as np
import torch

from benchmark.cells.metrics import auc
from benchmark.cells.pipeline import make_pipeline, run_batches
from recsys_models.batching import SplitArrays, rank_batch
from recsys_models.config import TrainConfig
from recsys_models.factory import batch_layout, build_model
from recsys_models.features import FeatureSet, RankBatch
from recsys_models.train_wrapper import RankerTrain

MODELS = ("dlrm", "din", "sim")
LOOPS = ("plain", "sparse_dist")
TOL = 1e-6


def _sharded(name: str, fs: FeatureSet, cfg: TrainConfig, codes: torch.Tensor, sharding: str) -> tuple:
    """DMP(RankerTrain(ranker)) from seed 0 and its one optimiser, as benchmark.cells.train builds it."""
    from recsys_models.sharding import shard_model

    torch.manual_seed(0)
    state = RankerTrain(build_model(name, fs, cfg, search_codes=codes)).state_dict()
    local = RankerTrain(build_model(name, fs, cfg, search_codes=codes, meta=True))
    return shard_model(local, state, device=torch.device("cpu"), sharding=sharding,  # type: ignore[arg-type]
                       emb_optimizer=cfg.emb_optimizer, emb_lr=cfg.emb_lr, dense_lr=cfg.lr, batch_size=cfg.batch_size)


def _one_model(name: str, fs: FeatureSet, cfg: TrainConfig, codes: torch.Tensor, train: list[RankBatch],
               held_out: list[RankBatch], args: argparse.Namespace) -> dict[str, object]:
    cpu = torch.device("cpu")
    runs = {}
    for loop in LOOPS:
        model, opt = _sharded(name, fs, cfg, codes, args.sharding)
        model.train()
        runs[loop] = (model, opt, make_pipeline(loop, model, [opt], cpu))
    steps = {loop: run_batches(m, iter(train), [o], p) for loop, (m, o, p) in runs.items()}
    losses: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    times: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    for _ in range(len(train)):
        for loop in LOOPS:  # taking turns, step by step
            start = time.perf_counter()
            loss, _, _ = next(steps[loop])
            times[loop].append(time.perf_counter() - start)
            losses[loop].append(float(loss))
    for loop in LOOPS:  # both generators are spent: the pipeline has run every batch it was handed
        assert next(steps[loop], None) is None
    preds, labels = {}, torch.cat([b.labels for b in held_out]).numpy()
    for loop, (model, opt, pipeline) in runs.items():
        model.eval()
        with torch.no_grad():
            preds[loop] = torch.cat([torch.sigmoid(logits).double()
                                     for _, logits, _ in run_batches(model, iter(held_out), [opt], pipeline)]).numpy()
    ms = {loop: statistics.median(times[loop][args.warmup:]) * 1e3 for loop in LOOPS}
    loss_gap = max(abs(a - b) for a, b in zip(losses["plain"], losses["sparse_dist"], strict=True))
    pred_gap = float(np.abs(preds["plain"] - preds["sparse_dist"]).max())
    gap = max(loss_gap, pred_gap)
    return {
        "ms_per_step": {loop: round(v, 2) for loop, v in ms.items()},
        "samples_per_s": {loop: round(args.batch_size / (v / 1e3), 1) for loop, v in ms.items()},
        "final_loss": {loop: losses[loop][-1] for loop in LOOPS},
        "auc": {loop: auc(labels, preds[loop]) for loop in LOOPS},
        "max_loss_diff": loss_gap, "max_pred_diff": pred_gap,
        "verdict": "equal to the bit" if gap == 0 else f"within {TOL:g}" if gap <= TOL else "DIFFER",
    }


def measure_pipeline(args: argparse.Namespace, fs: FeatureSet, raw: list[SplitArrays], held_out: list[SplitArrays],
                     codes: torch.Tensor, cfg: TrainConfig) -> dict[str, object]:
    """The pipeline rows of every model: `--warmup + --steps` training steps cycling over the global batches
    `raw`, then the held-out batches scored (see the module docstring)."""
    out: dict[str, object] = {"sharding": args.sharding, "steps": args.steps, "warmup": args.warmup,
                              "held_out_rows": sum(len(r) for r in held_out), "tolerance": TOL}
    for name in MODELS:
        layout = batch_layout(name)
        train = [rank_batch(fs, r, torch.arange(len(r)), layout, 0, 1)[0]
                 for r in itertools.islice(itertools.cycle(raw), args.warmup + args.steps)]
        scored = [rank_batch(fs, r, torch.arange(len(r)), layout, 0, 1)[0] for r in held_out]
        out[name] = _one_model(name, fs, cfg, codes, train, scored, args)
    return out


def print_pipeline(result: dict) -> None:
    """The pipeline rows as a table, then the comparison of each model's figures."""
    n = result["warmup"] + result["steps"]
    print(f"\ntraining loop with and without TorchRec's TrainPipelineSparseDist: sharded ({result['sharding']}) in one "
          f"gloo process, the same init and {n} batches (median of {result['steps']} steps), then "
          f"{result['held_out_rows']} held-out rows scored in eval mode")
    print(f"{'model':<8}{'loop':<13}{'ms/step':>10}{'samples/s':>12}{'final loss':>14}{'held-out AUC':>14}")
    for name in MODELS:
        r = result[name]
        for loop in LOOPS:
            print(f"{name:<8}{loop:<13}{r['ms_per_step'][loop]:>10.1f}{r['samples_per_s'][loop]:>12,.0f}"
                  f"{r['final_loss'][loop]:>14.8f}{r['auc'][loop]:>14.8f}")
    for name in MODELS:
        r = result[name]
        print(f"{name}: max |loss diff| over {n} steps {r['max_loss_diff']:.3g}, max |prediction diff| "
              f"{r['max_pred_diff']:.3g}: {r['verdict']}")
    print("(on CPU the pipeline has no CUDA streams to overlap with: its samples/s is its bookkeeping cost)")
