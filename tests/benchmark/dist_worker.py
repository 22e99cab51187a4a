"""What each rank of the 2-process test world runs (tests/benchmark/test_distributed.py spawns it once).

Not a test module: `benchmark.dist.launch.spawn(call_file, 2, <this file>, "main", out_dir)` runs `main` on two
gloo ranks. Every case of the 2-rank world is here, so the processes start once: the rankers (DLRM, DIN, SIM x
table-wise, row-wise; DLRM, SIM column-wise; DLRM row-wise and SIM table-wise again through TorchRec's
TrainPipelineSparseDist), the gathering of predictions to rank 0 on uneven shards, and
alignment (one step's loss and gradients, and a whole `align` run). Rank 0 saves what it saw to out_dir/rank<r>.pt for the parent to compare
with the same computations in one process.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import torch

from benchmark.cells.inputs import CellInputs, build_features
from benchmark.cells.metrics import all_metrics
from benchmark.cells.train import train_cell
from benchmark.core.world import World
from recsys_models.config import DlrmConfig, SimConfig, TrainConfig

N, U = 30, 12
CFG = TrainConfig(epochs=2, batch_size=64, embedding_dim=8, sharded=True, patience=5,
                  dlrm=DlrmConfig(dense_arch=(16,), over_arch=(16,)), sim=SimConfig(top_k=4, recent=3, mlp=(16,)))
CASES = [*((m, s) for m in ("dlrm", "din", "sim") for s in ("table_wise", "row_wise")), ("dlrm", "column_wise"),
         ("sim", "column_wise")]
PIPELINE_CASES = [("dlrm", "row_wise"), ("sim", "table_wise")]  # also trained through TrainPipelineSparseDist


def _split(rng: np.random.Generator, n: int) -> pl.DataFrame:
    items = rng.integers(0, N, n)
    hist = [rng.integers(0, N, h).tolist() for h in rng.integers(0, 8, n)]
    label = ((items % 2 == 0) ^ (rng.random(n) < 0.1)).astype(np.int8)  # learnable from the item
    return pl.DataFrame(
        {"user_idx": rng.integers(0, U, n), "item_idx": items, "ts": np.arange(n), "label": label,
         "hist_item_idx": hist},
        schema_overrides={"user_idx": pl.Int32, "item_idx": pl.Int32, "ts": pl.Int64, "label": pl.Int8,
                          "hist_item_idx": pl.List(pl.Int32)},
    )


def inputs() -> CellInputs:
    """Tiny splits whose sizes leave uneven last batches (401 train rows in batches of 64: 17 -> 9 + 8)."""
    rng = np.random.default_rng(0)
    train, val, test = _split(rng, 401), _split(rng, 121), _split(rng, 120)
    items = pl.DataFrame({"item_idx": np.arange(N, dtype=np.int32), "is_cold": np.arange(N) % 5 == 0,
                          "pop_bucket": (np.arange(N) % 2).astype(np.int8)})
    users = pl.DataFrame({"user_idx": np.arange(U, dtype=np.int32), "gender": ["F", "M"] * (U // 2)})
    codes = np.stack([np.arange(N) % 2, np.arange(N) % 3], axis=1)
    fs = build_features("aligned_codes", n_items=N, n_users=U, embedding_dim=8, users=users, codes=codes,
                        dense=rng.normal(size=(N, 4)).astype(np.float32))
    return CellInputs(train, val, test, items, fs, torch.from_numpy(codes))


def rankers(world: World, pipeline: str = "none") -> dict:
    """(model, sharding) -> test AUC/GAUC, best epoch, validation AUC per epoch, the epochs' training losses, the
    plan and the pipeline, trained together (pipeline "sparse_dist": the PIPELINE_CASES only)."""
    out = {}
    for model, sharding in CASES if pipeline == "none" else PIPELINE_CASES:
        r = train_cell(model, inputs(), dataclasses.replace(CFG, sharding=sharding, pipeline=pipeline), seed=0,
                       world=world)
        out[(model, sharding)] = {"test_auc": r.test["all"]["auc"], "test_gauc": r.test["all"]["gauc"],
                                  "best_epoch": r.best_epoch, "val_auc": [h.val["auc"] for h in r.history],
                                  "train_loss": [h.train_loss for h in r.history], "plan": r.sharding_plan,
                                  "pipeline": r.pipeline,
                                  "pred": None if r.test_predictions is None else r.test_predictions["pred"].to_numpy()}
    return out


def metric_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Random impressions (users, labels, preds with ties) and an uneven split of their rows over 2 ranks."""
    rng = np.random.default_rng(7)
    n = 101
    users, labels = rng.integers(0, 9, n), rng.integers(0, 2, n)
    preds = np.round(rng.random(n), 1)  # ties, so average ranks matter
    perm = rng.permutation(n)
    return users, labels, preds, [np.sort(perm[:37]), np.sort(perm[37:])]


def metrics(world: World) -> dict:
    users, labels, preds, parts = metric_data()
    mine = parts[world.rank]
    gathered = world.gather_rows(mine, preds[mine], len(preds))  # rank 0 only
    if gathered is None:
        return {"gathered": None, "exact_rows": None}
    return {"gathered": all_metrics(users, labels, gathered), "exact_rows": bool((gathered == preds).all())}


def align_data() -> tuple[pl.DataFrame, object]:
    from qarm.encoders.fusion import ItemFeatures

    rng = np.random.default_rng(3)
    n = 40
    feats = ItemFeatures({"text": rng.normal(size=(n, 12)).astype(np.float32)}, {"text": np.ones(n, dtype=bool)})
    a = rng.integers(0, n, 300)
    pairs = pl.DataFrame({"trigger_idx": a, "target_idx": (a + rng.integers(1, 4, 300)) % n})
    return pairs, feats


def align_step(distributed: bool) -> dict:
    """One InfoNCE step on a global batch of 9 pairs (uneven parts 5 + 4): the loss and the head's gradients."""
    from qarm.alignment.distributed import pair_embeddings, wrap_ddp
    from qarm.alignment.towers import AlignModel
    from qarm.encoders.fusion import ItemEncoder
    from qarm.losses import info_nce

    pairs, feats = align_data()
    torch.manual_seed(0)
    model = AlignModel({"text": torch.from_numpy(feats.features["text"])},
                       {"text": torch.from_numpy(feats.present["text"])}, ItemEncoder({"text": 12}, d=8))
    trainer = wrap_ddp(model, torch.device("cpu")) if distributed else model
    ab = torch.from_numpy(pairs.to_numpy()[:9].astype(np.int64))
    za, zb = pair_embeddings(trainer, ab[:, 0], ab[:, 1], distributed=distributed)
    loss = info_nce(za, zb, temperature=0.1, anchor_ids=ab[:, 0], positive_ids=ab[:, 1])
    loss.backward()
    return {"loss": float(loss.detach()), "grads": {n: p.grad.clone() for n, p in model.head.named_parameters()}}


def align_run(distributed: bool) -> dict:
    from qarm.alignment import AlignConfig, align

    pairs, feats = align_data()
    cfg = AlignConfig(dim=8, batch_size=33, epochs=3, patience=5)
    r = align(pairs, features=feats, config=cfg, seed=0, distributed=distributed)
    return {"embeddings": r.embeddings, "losses": [h.loss for h in r.summary.history]}


def main(world: World, out_dir: str) -> None:
    result = {"rank": world.rank, "size": world.size, "metrics": metrics(world), "align_step": align_step(True),
              "align_run": align_run(True), "rankers": rankers(world), "pipelined": rankers(world, "sparse_dist")}
    torch.save(result, Path(out_dir) / f"rank{world.rank}.pt")
