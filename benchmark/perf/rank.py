"""`qarm-bench perf rank`: DLRM training samples/s, TorchRec vs plain PyTorch, and SIM/DIN step cost.

All rankers train on the same pre-built batches of an aligned_codes-shaped feature set (user id,
item id + history ids, L RQ levels + history codes; every table `--dim` wide):
- torchrec_fused: torchrec DLRM, single-process DistributedModelParallel (gloo), table-wise fused
  TBE kernels, Adagrad fused in backward (deps.md §5a: the CPU fast path);
- torchrec_ebc: the same DLRM unsharded (EmbeddingBagCollection, dense gradients, torch Adagrad);
- plain_dense / plain_sparse: a plain-PyTorch DLRM of the same shape, nn.EmbeddingBag(mode="mean")
  per table with dense / sparse gradients and torch Adagrad;
- din, sim_hard, sim_soft: the sequence rankers (unsharded EmbeddingBagCollections, torch Adagrad).
Timing: median wall time of `--steps` training steps after `--warmup`, one process, `--threads`;
the models take turns step by step so that load from other processes falls on all alike.
Cost model, per model (issue 21): FLOPs per sample (torch.utils.flop_counter.FlopCounterMode over the forward and
backward of one batch: matrix products only, in-place addmm_ included (IN_PLACE_FLOPS); products done as
embedding-bag sums count zero, so the figure depends a little on how a unit computes), the share of the machine's one-thread-per-`--threads` fp32 GEMM
rate (a timed 1024^3 torch.mm) the step reaches at its samples/s, and where a step's CPU time goes, from a
torch.profiler profile of a few steps grouped by the models' record_function labels (qarm.lookup, .features,
.attention, .interaction, .mlp; the step's own qarm.optimizer; backward ops count to the label of the forward op
they differentiate). `batch_build_ms`: building one batch (outside the timed step; training pays it per step).
`--reference` adds DIN and SIM's padded reference computation (`forward_reference`) side by side.

Pipeline rows (benchmark/perf/rank_pipeline.py; `--skip-pipeline` leaves them out): DLRM, DIN and SIM sharded
as the training loop shards them, trained on the same batches from the same init through the loop's
`run_batches` with and without TorchRec's TrainPipelineSparseDist, side by side: samples/s, final loss,
held-out AUC, and how far apart the two runs' losses and predictions are.

`--nproc-per-node N` (N > 1) instead times the sharded rankers (recsys_models.sharding, `--sharding`) in one
process and in a spawned world of N gloo processes on the same global batches (each rank takes its part, as in
training), and prints samples/s of both side by side. One thread per process.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, mm_flop

from benchmark.cells.pipeline import train_step
from benchmark.cells.train import make_optimizers
from recsys_models.batching import SplitArrays, batch_of
from recsys_models.config import DinConfig, DlrmConfig, SimConfig, TrainConfig
from recsys_models.factory import batch_layout, build_model
from recsys_models.features import FeatureSet, RankBatch
from recsys_models.train_wrapper import RankerTrain

# Where a step's time goes: the record_function labels of the models (recsys_models) and of `_profiled_step`.
PHASES = ("lookup", "features", "attention", "interaction", "mlp", "loss+backward_other", "optimizer", "other")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=2048, help="rows per training step (default 2048)")
    parser.add_argument("--rows", type=int, default=100_000, help="item-table rows N (default 100000)")
    parser.add_argument("--users", type=int, default=10_000, help="user-table rows (default 10000)")
    parser.add_argument("--hist", type=int, default=50, help="history length T (default 50)")
    parser.add_argument("--levels", type=int, default=3, help="RQ levels L (default 3)")
    parser.add_argument("--codebook", type=int, default=256, help="RQ codebook size K (default 256)")
    parser.add_argument("--dim", type=int, default=16, help="embedding dim (default 16)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--skip-fused", action="store_true", help="skip the DistributedModelParallel path")
    parser.add_argument("--skip-pipeline", action="store_true",
                        help="skip the training loop with vs without TorchRec's TrainPipelineSparseDist (sharded "
                             "DLRM/DIN/SIM, same init and batches: samples/s, final loss, held-out AUC)")
    parser.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                        help="N > 1: sharded DLRM/DIN/SIM samples/s in 1 process vs N processes (gloo)")
    parser.add_argument("--sharding", default="auto", choices=["auto", "table_wise", "row_wise", "column_wise"],
                        help="table placement of the sharded rankers of --nproc-per-node and of the pipeline rows "
                             "(default: the planner's choice)")
    parser.add_argument("--reference", action="store_true",
                        help="also time DIN and SIM's padded reference computation (forward_reference, the path "
                             "before the jagged one) side by side: rows din_ref, sim_hard_ref, sim_soft_ref")


def _feature_set(args: argparse.Namespace, g: torch.Generator) -> FeatureSet:
    """aligned_codes' features: item id + one unigram field per code level."""
    from benchmark.cells.inputs import build_features

    codes = torch.randint(0, args.codebook, (args.rows, args.levels), generator=g)
    return build_features("aligned_codes", n_items=args.rows, n_users=args.users, embedding_dim=args.dim,
                          codes=codes, vocab_sizes=(args.codebook,) * args.levels)


def _raw_batches(args: argparse.Namespace, g: torch.Generator, n: int = 4) -> list[SplitArrays]:
    """n random global batches of `--batch-size` rows (users, items, left-aligned histories, labels)."""
    b, t = args.batch_size, args.hist
    out = []
    for _ in range(n):
        hist_len = torch.randint(0, t + 1, (b,), generator=g)
        hist = torch.randint(0, args.rows, (b, t), generator=g) * (torch.arange(t)[None] < hist_len[:, None])
        items = torch.randint(0, args.rows, (b,), generator=g)
        users = torch.randint(0, args.users, (b,), generator=g)
        out.append(SplitArrays.from_padded(users, items, (items % 2).float(), hist, hist_len))
    return out


def _batches(fs: FeatureSet, raw: list[SplitArrays]) -> dict[str, list[RankBatch]]:
    """The same batches in both layouts: "pooled" (DLRM) and "sequence" (DIN, SIM)."""
    return {layout: [batch_of(fs, r, torch.arange(len(r)), layout) for r in raw] for layout in ("pooled", "sequence")}


class PlainDLRM(nn.Module):
    """torchrec's DLRM (dot interaction) rebuilt from nn.EmbeddingBag and nn.Linear, for comparison."""

    def __init__(self, table_rows: list[int], features: list[int], dim: int, dense_in: int,
                 dense_arch: tuple[int, ...], over_arch: tuple[int, ...], sparse: bool) -> None:
        super().__init__()
        self.bags = nn.ModuleList(nn.EmbeddingBag(r, dim, mode="mean", sparse=sparse, include_last_offset=True) for r in table_rows)
        self.features = features  # table of each feature, in KJT key order
        self.dense = _relu_mlp(dense_in, [*dense_arch, dim])
        f = len(features)
        self.register_buffer("triu", torch.triu_indices(f + 1, f + 1, offset=1), persistent=False)
        over = _relu_mlp(dim + f * (f + 1) // 2, list(over_arch))
        self.over = nn.Sequential(over, nn.Linear(over_arch[-1], 1))

    def forward(self, dense: torch.Tensor, sparse: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        with torch.profiler.record_function("qarm.mlp"):
            x = self.dense(dense)
        with torch.profiler.record_function("qarm.lookup"):
            embs = [self.bags[t](v, o) for t, (v, o) in zip(self.features, sparse)]
        with torch.profiler.record_function("qarm.interaction"):
            combined = torch.stack([x, *embs], dim=1)
            inter = torch.bmm(combined, combined.transpose(1, 2))[:, self.triu[0], self.triu[1]]
        with torch.profiler.record_function("qarm.mlp"):
            return self.over(torch.cat([x, inter], dim=1)).squeeze(-1)


def _relu_mlp(width: int, sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for s in sizes:
        layers += [nn.Linear(width, s), nn.ReLU()]
        width = s
    return nn.Sequential(*layers)


def _time_interleaved(steps: dict[str, tuple[Callable[[RankBatch], None], list[RankBatch]]], n: int,
                      warmup: int) -> dict[str, float]:
    """Median seconds per step of each model (each with its batches), the models taking turns step by step, so
    that load from other processes on a shared machine falls on all of them alike."""
    for step, batches in steps.values():
        for i in range(warmup):
            step(batches[i % len(batches)])
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(n):
        for name, (step, batches) in steps.items():
            start = time.perf_counter()
            step(batches[i % len(batches)])
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


class _Call(nn.Module):
    """A forward that is not a ranker module (DIN/SIM's forward_reference, the plain-PyTorch DLRM), as a module
    RankerTrain can put the loss around. Its parameters are the caller's (the optimisers hold them)."""

    def __init__(self, forward: Callable[[RankBatch], torch.Tensor]) -> None:
        super().__init__()
        self.fn = forward

    def forward(self, batch: RankBatch) -> torch.Tensor:
        return self.fn(batch)


def _step_fn(optimizers: list, forward: Callable[[RankBatch], torch.Tensor]) -> Callable:
    """The training loop's own step (benchmark.cells.pipeline.train_step) on `forward` with its loss inside."""
    model = RankerTrain(forward if isinstance(forward, nn.Module) else _Call(forward))

    def step(batch: RankBatch) -> None:
        train_step(model, optimizers, batch)

    return step


def _plain(fs: FeatureSet, cfg: TrainConfig, batches: list[RankBatch], sparse: bool) -> tuple[nn.Module, list, list]:
    spec = fs.spec
    item_tables = list(spec.tables())
    tables = [rows for _, _, rows in spec.context_tables()] + list(spec.tables().values())
    features = list(range(len(spec.context_tables())))
    for f in spec.item_fields:  # target and history key of each field, in KJT key order
        features += [len(spec.context_tables()) + item_tables.index(f.table)] * 2
    model = PlainDLRM(tables, features, spec.embedding_dim, spec.dense_in_features, cfg.dlrm.dense_arch,
                      cfg.dlrm.over_arch, sparse)
    emb = list(model.bags.parameters())
    dense = [p for n, p in model.named_parameters() if not n.startswith("bags.")]
    opts = [torch.optim.Adam(dense, lr=cfg.lr), torch.optim.Adagrad(emb, lr=cfg.emb_lr)]
    # The plain model reads (values, offsets) per feature, split from the KJT outside the timed step.
    inputs = [[(jt.values(), jt.offsets()) for jt in b.sparse.to_dict().values()] for b in batches]
    return model, opts, inputs


def measure(args: argparse.Namespace) -> dict[str, object]:
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    fs = _feature_set(args, g)
    raw = _raw_batches(args, g)
    batches = _batches(fs, raw)
    codes = _codes(fs, args)
    cfg = TrainConfig(embedding_dim=args.dim, dlrm=DlrmConfig(), din=DinConfig(max_len=args.hist),
                      sim=SimConfig(top_k=min(20, args.hist), recent=min(10, args.hist)))
    steps: dict[str, tuple[Callable[[RankBatch], None], list[RankBatch]]] = {}
    notes: dict[str, str] = {}
    parts: dict[str, tuple[Callable[[RankBatch], torch.Tensor], list, list[RankBatch]]] = {}  # forward, optimisers
    if not args.skip_fused:
        try:
            dmp, opt = _sharded("dlrm", fs, cfg, "table_wise", codes)
            steps["torchrec_fused"] = (_step_fn([opt], dmp), batches["pooled"])
            parts["torchrec_fused"] = (dmp, [opt], batches["pooled"])
        except Exception as e:  # report why the fused path is unavailable rather than failing the benchmark
            notes["torchrec_fused"] = f"unavailable: {type(e).__name__}: {e}"
    soft = TrainConfig(embedding_dim=args.dim, sim=SimConfig(search="soft", top_k=cfg.sim.top_k, recent=cfg.sim.recent))
    for name, model_name, c in (("torchrec_ebc", "dlrm", cfg), ("din", "din", cfg), ("sim_hard", "sim", cfg),
                                ("sim_soft", "sim", soft)):
        model = build_model(model_name, fs, c, search_codes=codes)
        optimizers = make_optimizers(model, c)
        steps[name] = (_step_fn(optimizers, model), batches[batch_layout(model_name)])
        parts[name] = (model, optimizers, batches[batch_layout(model_name)])
        if args.reference and model_name != "dlrm":  # the same model and optimisers, the padded computation
            steps[f"{name}_ref"] = (_step_fn(optimizers, model.forward_reference), steps[name][1])
            parts[f"{name}_ref"] = (model.forward_reference, optimizers, steps[name][1])
    for sparse in (False, True):
        model, opts, inputs = _plain(fs, cfg, batches["pooled"], sparse)
        lookup = {id(b): x for b, x in zip(batches["pooled"], inputs)}
        forward = (lambda b, m=model, lk=lookup: m(b.dense, lk[id(b)]))  # noqa: E731
        steps["plain_sparse" if sparse else "plain_dense"] = (_step_fn(opts, forward), batches["pooled"])
        parts["plain_sparse" if sparse else "plain_dense"] = (forward, opts, batches["pooled"])
    ms = _time_interleaved(steps, args.steps, args.warmup)
    result = _report(args, ms, notes)
    result.update(_costs(args, ms, parts))
    result["batch_build_ms"] = _build_ms(fs, raw)
    if not args.skip_pipeline:
        from benchmark.perf.rank_pipeline import measure_pipeline

        held_out = _raw_batches(args, torch.Generator().manual_seed(1), n=2)
        result["pipeline"] = measure_pipeline(args, fs, raw, held_out, codes, cfg)
    return result


def gemm_gflops(threads: int, n: int = 1024, repeats: int = 5) -> float:
    """This machine's measured fp32 GEMM rate on `threads` threads (GFLOP/s): the best of `repeats` timings of
    one (n, n) x (n, n) torch.mm, 2 n^3 FLOPs (the roofline the rankers' samples/s are compared with)."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    torch.mm(a, b)  # warm-up: page in, pick the kernel
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _addmm_inplace_flop(self_shape: Any, a_shape: Any, b_shape: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return mm_flop(a_shape, b_shape)


# In-place matrix products torch's counter has no formula for (it counts addmm, not addmm_): DIN's fused attention
# unit (recsys_models/attention.py JaggedDinPool) accumulates with addmm_, which would otherwise count zero.
IN_PLACE_FLOPS = {torch.ops.aten.addmm_: _addmm_inplace_flop}  # keyed by overload packet, as torch's table


def flops_per_sample(forward: Callable[[RankBatch], torch.Tensor], batch: RankBatch) -> float:
    """FLOPs of one training step's forward and backward on `batch`, per row, as torch's FlopCounterMode counts
    them (matrix products only: lookups and elementwise work count zero). The step's gradients are left behind
    (a fused-in-backward optimiser, torchrec_fused, also updates its tables once: harmless for a benchmark)."""
    counter = FlopCounterMode(display=False, custom_mapping=IN_PLACE_FLOPS)
    with counter:
        nn.functional.binary_cross_entropy_with_logits(forward(batch), batch.labels).backward()
    return counter.get_total_flops() / len(batch.labels)


def _phase(event: object, labels: dict[int, str]) -> str:
    """The phase of one profiler event: the innermost qarm.* label above it; for a backward op, the label of
    the forward op that made its autograd node (matched by sequence number); else loss/backward or other."""
    e = event
    while e is not None:
        name = e.name  # type: ignore[attr-defined]
        if name.startswith("autograd::engine::evaluate_function") and e.sequence_nr in labels:  # type: ignore[attr-defined]
            return labels[e.sequence_nr]  # type: ignore[attr-defined]
        if name.startswith("Optimizer."):
            return "optimizer"
        if name.startswith("qarm."):
            phase = name.removeprefix("qarm.")
            return "loss+backward_other" if phase in ("forward", "backward") else phase
        e = e.cpu_parent  # type: ignore[attr-defined]
    return "other"


def time_split(forward: Callable[[RankBatch], torch.Tensor], optimizers: list, batches: list[RankBatch],
               steps: int = 5) -> dict[str, float]:
    """Share of a training step's CPU time in each of PHASES (summing to 1), from a torch.profiler profile of
    `steps` steps (after one untimed). Backward ops count to the phase of the forward op they differentiate."""
    from torch.profiler import ProfilerActivity, profile, record_function

    loss_fn = nn.BCEWithLogitsLoss()

    def step(batch: RankBatch) -> None:  # train_step with the loss, backward and optimiser labelled
        with record_function("qarm.forward"):
            loss = loss_fn(forward(batch), batch.labels)
        for opt in optimizers:
            opt.zero_grad()
        with record_function("qarm.backward"):
            loss.backward()
        with record_function("qarm.optimizer"):
            for opt in optimizers:
                opt.step()

    step(batches[0])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(batches[i % len(batches)])
    events = prof.events()
    labels: dict[int, str] = {}  # sequence number of a forward op -> its phase
    for e in events:  # in order of start time
        if e.sequence_nr >= 0 and not e.name.startswith("autograd::"):
            phase = _phase(e, {})
            if phase not in ("loss+backward_other", "other"):
                # The last op with a number wins: ops that make no autograd node (index arithmetic without
                # gradients) carry the number the next node will take, which may be a later phase's.
                labels[e.sequence_nr] = phase
    totals = dict.fromkeys(PHASES, 0.0)
    for e in events:
        totals[_phase(e, labels)] += e.self_cpu_time_total
    whole = sum(totals.values()) or 1.0
    return {k: round(v / whole, 3) for k, v in totals.items()}


def _costs(args: argparse.Namespace, ms: dict[str, float],
           parts: dict[str, tuple[Callable[[RankBatch], torch.Tensor], list, list[RankBatch]]]) -> dict[str, object]:
    """Per model: FLOPs per sample, the share of the one-machine GEMM roofline reached, and the time split."""
    rate = gemm_gflops(args.threads)
    flops, roofline, split = {}, {}, {}
    for name, (forward, optimizers, batches) in parts.items():
        flops[name] = flops_per_sample(forward, batches[0])
        for opt in optimizers:
            opt.zero_grad()
        roofline[name] = round(flops[name] * args.batch_size / ms[name] / (rate * 1e9), 4)
        split[name] = time_split(forward, optimizers, batches)
    return {"gemm_gflops": round(rate, 1), "flops_per_sample": {k: round(v) for k, v in flops.items()},
            "roofline_share": roofline, "time_split": split}


def _build_ms(fs: FeatureSet, raw: list[SplitArrays]) -> dict[str, float]:
    """Median ms to build one batch (`batch_of`, outside the timed step: the training loop pays it per step)
    in each layout."""
    out = {}
    for layout in ("pooled", "sequence"):
        times = []
        for r in raw:
            start = time.perf_counter()
            batch_of(fs, r, torch.arange(len(r)), layout)
            times.append(time.perf_counter() - start)
        out[layout] = round(statistics.median(times) * 1e3, 2)
    return out


def _report(args: argparse.Namespace, ms: dict[str, float], notes: dict[str, str]) -> dict[str, object]:
    sps = {k: args.batch_size / v for k, v in ms.items()}
    torchrec = "torchrec_fused" if "torchrec_fused" in ms else "torchrec_ebc"
    best_plain = max(("plain_dense", "plain_sparse"), key=lambda k: sps[k])
    return {
        "batch_size": args.batch_size, "rows": args.rows, "users": args.users, "hist": args.hist,
        "levels": args.levels, "codebook": args.codebook, "dim": args.dim, "steps": args.steps,
        "threads": args.threads,
        "ms_per_step": {k: round(v * 1e3, 2) for k, v in ms.items()},
        "samples_per_s": {k: round(v, 1) for k, v in sps.items()},
        "torchrec_path": torchrec,
        "ratio_torchrec_vs_plain_dense": round(sps[torchrec] / sps["plain_dense"], 3),
        "ratio_torchrec_vs_best_plain": round(sps[torchrec] / sps[best_plain], 3),
        "ratio_torchrec_ebc_vs_plain_dense": round(sps["torchrec_ebc"] / sps["plain_dense"], 3),
        "cost_vs_dlrm_ebc": {k: round(ms[k] / ms["torchrec_ebc"], 2) for k in ("din", "sim_hard", "sim_soft")},
        "share_of_dlrm": {k: round(sps[k] / sps[torchrec], 3) for k in ms if k.startswith(("din", "sim"))},
        "notes": notes,
    }


def _codes(fs: FeatureSet, args: argparse.Namespace) -> torch.Tensor:
    """(N, L) the RQ codes SIM's hard search matches on."""
    return torch.cat([fs.item_tokens[f"unigram_{j + 1}"] for j in range(args.levels)], dim=1)


def _sharded(model_name: str, fs: FeatureSet, cfg: TrainConfig, sharding: str,
             codes: torch.Tensor) -> tuple[nn.Module, object]:
    """A ranker in DistributedModelParallel (fused tables) over the current world, initialised from seed 0."""
    from recsys_models.sharding import shard_model

    torch.manual_seed(0)
    state = build_model(model_name, fs, cfg, search_codes=codes).state_dict()
    local = build_model(model_name, fs, cfg, search_codes=codes, meta=True)
    return shard_model(local, state, device=torch.device("cpu"), sharding=sharding,  # type: ignore[arg-type]
                       emb_optimizer=cfg.emb_optimizer, emb_lr=cfg.emb_lr, dense_lr=cfg.lr)


WORLD_MODELS = ("dlrm", "din", "sim")


def _world_steps(world: object, args: argparse.Namespace, out: str | None) -> dict[str, float]:
    """Median seconds per global step of each sharded ranker, this process being one rank of `world` (rank 0
    writes them to `out`). Every rank builds the same data and takes its part of every batch."""
    rank, size = getattr(world, "rank", 0), getattr(world, "size", 1)
    g = torch.Generator().manual_seed(0)
    fs = _feature_set(args, g)
    raw = _raw_batches(args, g)
    cfg = TrainConfig(embedding_dim=args.dim, din=DinConfig(max_len=args.hist),
                      sim=SimConfig(top_k=min(20, args.hist), recent=min(10, args.hist)))
    times = {name: _time_sharded(name, fs, cfg, raw, rank, size, args) for name in WORLD_MODELS}
    if out is not None and rank == 0:
        Path(out).write_text(json.dumps(times))
    return times


def _time_sharded(name: str, fs: FeatureSet, cfg: TrainConfig, raw: list[SplitArrays], rank: int, size: int,
                  args: argparse.Namespace) -> float:
    """Median seconds of one training step of the sharded `name` on this rank's part of each global batch."""
    from recsys_models.batching import rank_batch
    from recsys_models.sharding import global_mean_bce

    dmp, opt = _sharded(name, fs, cfg, args.sharding, _codes(fs, args))
    parts = []
    for r in raw:  # this rank's part of each global batch, built outside the timed step
        batch, _, real = rank_batch(fs, r, torch.arange(len(r)), batch_layout(name), rank, size)
        parts.append((batch, real))
    durations = []
    for i in range(args.warmup + args.steps):
        batch, real = parts[i % len(parts)]
        start = time.perf_counter()
        loss = global_mean_bce(dmp(batch), batch.labels, args.batch_size, size, real)
        opt.zero_grad()  # type: ignore[attr-defined]
        loss.backward()
        opt.step()  # type: ignore[attr-defined]
        durations.append(time.perf_counter() - start)
    return statistics.median(durations[args.warmup:])


def _world_worker(world: object, args: argparse.Namespace, out: str) -> None:
    _world_steps(world, args, out)


def measure_world(args: argparse.Namespace) -> dict[str, object]:
    """Sharded rankers: samples/s in this process (a world of one) and in a spawned world of N processes."""
    import tempfile

    from benchmark.core.world import World
    from benchmark.dist.launch import spawn

    torch.set_num_threads(1)
    one = _world_steps(World(), args, None)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "times.json"
        plain = argparse.Namespace(**{k: v for k, v in vars(args).items() if isinstance(v, int | float | str)})
        spawn(_world_worker, args.nproc_per_node, plain, str(out))
        many = json.loads(out.read_text())
    n = args.nproc_per_node
    sps = {m: {"1": round(args.batch_size / one[m], 1), str(n): round(args.batch_size / many[m], 1)}
           for m in WORLD_MODELS}
    return {"batch_size": args.batch_size, "rows": args.rows, "hist": args.hist, "dim": args.dim,
            "steps": args.steps, "sharding": args.sharding, "nproc_per_node": n,
            "ms_per_step": {m: {"1": round(one[m] * 1e3, 2), str(n): round(many[m] * 1e3, 2)} for m in WORLD_MODELS},
            "samples_per_s": sps,
            "speedup": {m: round(sps[m][str(n)] / sps[m]["1"], 3) for m in WORLD_MODELS}}


def run(args: argparse.Namespace) -> int:
    if args.nproc_per_node > 1:
        result = measure_world(args)
        if args.json:
            print(json.dumps(result))
            return 0
        n = args.nproc_per_node
        print(f"rank perf, sharded ({args.sharding}): global batch {args.batch_size}, N={args.rows}, T={args.hist}, "
              f"dim {args.dim}, 1 thread per process, median of {args.steps} steps")
        print(f"{'model':<8}{'samples/s (1 proc)':>20}{f'samples/s ({n} procs)':>22}{'speed-up':>10}")
        for m in WORLD_MODELS:
            sps = result["samples_per_s"][m]  # type: ignore[index]
            print(f"{m:<8}{sps['1']:>20,.0f}{sps[str(n)]:>22,.0f}{result['speedup'][m]:>10.2f}")  # type: ignore[index]
        return 0
    result = measure(args)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"rank perf: batch {args.batch_size}, N={args.rows}, T={args.hist}, L={args.levels}, dim {args.dim}, "
          f"{args.threads} thread(s), median of {args.steps} steps")
    short = {"loss+backward_other": "loss/bwd", "interaction": "inter"}
    phases = "".join(f"{short.get(p, p):>10}" for p in PHASES)
    print(f"one-thread fp32 GEMM (torch.mm 1024^3): {result['gemm_gflops']} GFLOP/s; FLOPs: FlopCounterMode over "
          f"forward + backward; time split: share of a profiled step's CPU time")
    print(f"{'model':<16}{'ms/step':>10}{'samples/s':>12}{'MFLOP/smp':>11}{'roofline':>10}{phases}")
    for k, v in result["ms_per_step"].items():  # type: ignore[union-attr]
        split = result["time_split"][k]  # type: ignore[index]
        print(f"{k:<16}{v:>10.1f}{result['samples_per_s'][k]:>12,.0f}"  # type: ignore[index]
              f"{result['flops_per_sample'][k] / 1e6:>11.3f}{result['roofline_share'][k]:>10.2%}"  # type: ignore[index]
              + "".join(f"{split[p]:>10.0%}" for p in PHASES))
    for k in ("torchrec_path", "ratio_torchrec_vs_plain_dense", "ratio_torchrec_vs_best_plain",
              "ratio_torchrec_ebc_vs_plain_dense", "cost_vs_dlrm_ebc", "share_of_dlrm", "batch_build_ms", "notes"):
        print(f"{k}: {result[k]}")
    if "pipeline" in result:
        from benchmark.perf.rank_pipeline import print_pipeline

        print_pipeline(result["pipeline"])  # type: ignore[arg-type]
    return 0
