"""What each rank of the 2-process item-side world runs (tests/benchmark/test_ranks_distributed.py spawns it once).

Not a test module: `benchmark.dist.launch.spawn(call_file, 2, <this file>, "main", out_dir)` runs `main` on two
gloo ranks: Swing by item (each rank its items, gathered), held-out recall (each rank its queries, gathered),
the U2I two towers under DDP with gathered negatives (one step; three epochs) and the pairs stage's
`mine_pairs` with both, and the whole item side of synthetic-tiny through the stage cache (pairs, frozen and align
collective: every rank computes its part, rank 0 writes the entry). Each rank saves what it saw to out_dir/rank<r>.pt for the parent to compare with one
process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from benchmark.core.world import World
from benchmark.itemside.compute import ranks_of
from qarm.pairs.config import PairsConfig, SwingConfig, U2IConfig

N_ITEMS = 40
SWING = SwingConfig(top_k=4, max_users_per_item=4)  # every item samples 4 of its users
U2I_STEP = U2IConfig(dim=8, epochs=1, batch_size=512, lr=0.01)  # one step: the batch holds every row
U2I_RUN = U2IConfig(dim=8, epochs=3, batch_size=17, lr=0.01)  # uneven parts (9 + 8) and an uneven last batch
PAIRS = PairsConfig(sources=("i2i", "u2i"), u2i=U2I_RUN, swing=SWING)  # i2i first: its rows are the Swing ones


def positives() -> pl.DataFrame:
    """30 users in 4 taste groups, 8 positives each from the group's 10 items."""
    rng = np.random.default_rng(0)
    rows = [(u, (u % 4) * 10 + int(i), t) for u in range(30) for t, i in enumerate(rng.choice(10, 8))]
    u, i, t = zip(*rows)
    return pl.DataFrame({"user_idx": u, "item_idx": i, "ts": t},
                        schema={"user_idx": pl.Int32, "item_idx": pl.Int32, "ts": pl.Int64})


def u2i_rows() -> tuple[object, np.ndarray]:
    """The two towers' training rows: (history windows, targets) of the positives with a history."""
    from qarm.pairs.history import positive_windows, sorted_positives

    pos = sorted_positives(positives())
    hist = positive_windows(pos, 50)
    has = hist.nonempty()
    return hist.select(has), pos["item_idx"].to_numpy()[has]


def recall_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    emb = rng.normal(size=(50, 6)).astype(np.float32)
    emb[3] = emb[4]  # a tie
    return emb, rng.integers(0, 50, 80), rng.integers(0, 50, 80), rng.random(50).astype(np.float32)


def item_side(out: Path, world: World | None = None):
    """synthetic-tiny's item side of seed 0 (short epochs; the MiniLM frozen encoder, 90 items in 2 batches)."""
    from benchmark.config.suite import load_config
    from benchmark.core.cache import StageCache
    from benchmark.data.preparation import data_key
    from benchmark.itemside.runner import run_item_side
    from benchmark.itemside.stages import item_side_keys

    cfg = load_config("synthetic-tiny", [f"suite.runs_dir={out}", "align.epochs=2", "pairs.u2i.epochs=1",
                                         "quantize.rq_vae.epochs=1", "suite.seeds=[0]"])
    keys = item_side_keys(cfg, data_key(cfg.data), 0)
    return run_item_side(cfg, StageCache(out / "artifacts"), keys, world=world, progress=False)


def main(world: World, out_dir: str) -> None:
    from qarm.alignment.heldout import recall_at_k
    from qarm.pairs import mine_pairs
    from qarm.pairs.swing import swing_part
    from qarm.pairs.two_tower import train_two_tower

    ranks = ranks_of(world)
    part = swing_part(positives(), N_ITEMS, SWING, seed=3, rank=world.rank, world_size=world.size)
    emb, a, b, bias = recall_data()
    recall = [recall_at_k(emb, a, b, 5, chunk=9, ranks=ranks), recall_at_k(emb, a, b, 5, chunk=9, item_bias=bias,
                                                                           ranks=ranks)]
    hist, targets = u2i_rows()
    _, step_losses = train_two_tower(hist, targets, N_ITEMS, U2I_STEP, seed=0, distributed=True)
    run_emb, run_losses = train_two_tower(hist, targets, N_ITEMS, U2I_RUN, seed=0, distributed=True)
    mined = mine_pairs(positives(), N_ITEMS, PAIRS, seed=3, ranks=ranks,
                       distributed=True)
    side = item_side(Path(out_dir) / "suite", world)
    torch.save({"frozen": side.frozen.features, "side_pairs": side.pairs.pairs, "aligned": side.align.embeddings,
                "val_recall": side.align.summary.val_recall, "frozen_recall": side.align.summary.frozen_recall,
                "rank": world.rank, "swing_part": part, "swing_parts": ranks.all_parts(part), "recall": recall,
                "u2i_first_loss": step_losses[0], "u2i_embeddings": run_emb, "u2i_losses": run_losses,
                "pairs": mined.pairs}, Path(out_dir) / f"rank{world.rank}.pt")
