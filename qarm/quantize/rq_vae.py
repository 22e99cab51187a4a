"""RQ-VAE: the learned residual quantizer of TIGER (Rajput et al. 2023 §3.1; Zeghidour et al. 2021).

Glossary: N items, d input dim, e latent dim, L levels, K codebook size, B batch.

    z = Enc(x)                         MLP d -> hidden... -> e
    r_0 = z;  c_l = argmin_k ||r_{l-1} - E^l_k||^2;  r_l = r_{l-1} - E^l_{c_l}
    z_q = sum_l E^l_{c_l};   x_hat = Dec(z + sg(z_q - z))        straight-through estimator
    loss = ||x - x_hat||^2 + sum_l ||sg(r_{l-1}) - E^l_{c_l}||^2 + beta ||r_{l-1} - sg(E^l_{c_l})||^2

TIGER: beta = 0.25, codebooks initialised by k-means on the first batch (here: faiss k-means on the
first batch's latent residuals, level by level). The model is an nn.Module; `fit_rq_vae` trains it,
and encode / decode / save / load take numpy arrays like RQKmeans.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from qarm.errors import QarmError
from qarm.quantize import faiss_utils
from qarm.quantize.config import RQVAEConfig
from qarm.quantize.io import load_artifact, save_artifact

KIND = "rq_vae"


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@dataclass
class RQVAEOutput:
    """x_hat: (B, d); codes: (B, L) int64; recon_loss, quant_loss: scalars; loss = recon + quant."""

    x_hat: torch.Tensor
    codes: torch.Tensor
    recon_loss: torch.Tensor
    quant_loss: torch.Tensor
    loss: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.loss = self.recon_loss + self.quant_loss


class RQVAE(nn.Module):
    """MLP encoder, L residual codebooks `(L, K, e)`, MLP decoder. Build with `fit_rq_vae` or `RQVAE.load`."""

    def __init__(self, input_dim: int, levels: int, codebook_size: int, cfg: RQVAEConfig) -> None:
        super().__init__()
        if min(input_dim, levels, codebook_size) < 1:
            raise QarmError(f"RQVAE: input_dim, levels and codebook_size must be >= 1, got "
                            f"{input_dim}, {levels}, {codebook_size}")
        self.input_dim, self.cfg = input_dim, cfg
        self.levels, self.codebook_size = levels, codebook_size
        self.encoder = _mlp([input_dim, *cfg.hidden, cfg.latent_dim])
        self.decoder = _mlp([cfg.latent_dim, *reversed(cfg.hidden), input_dim])
        self.codebooks = nn.Parameter(torch.randn(levels, codebook_size, cfg.latent_dim) * 0.1)
        # Per-dimension standardisation fitted on the training data: aligned embeddings are unit vectors
        # whose elements are ~1/sqrt(d), far below the unit scale the MLP initialisation assumes.
        self.register_buffer("x_mean", torch.zeros(input_dim))
        self.register_buffer("x_std", torch.ones(input_dim))
        self.history: list[dict[str, float]] = []

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z: (B, e) -> (z_q (B, e), codes (B, L) int64, codebook + commitment loss)."""
        residual, z_q = z, torch.zeros_like(z)
        codes, quant_loss = [], z.new_zeros(())
        for book in self.codebooks:
            code = torch.cdist(residual.detach(), book.detach()).argmin(1)  # first minimum: lowest k on ties
            chosen = book[code]
            quant_loss = quant_loss + ((residual.detach() - chosen) ** 2).mean() \
                + self.cfg.beta * ((residual - chosen.detach()) ** 2).mean()
            z_q = z_q + chosen
            residual = residual - chosen.detach()
            codes.append(code)
        return z_q, torch.stack(codes, 1), quant_loss

    def forward(self, x: torch.Tensor) -> RQVAEOutput:
        """x: (B, d) raw embeddings; x_hat in the raw space; recon_loss on the standardised scale."""
        xs = (x - self.x_mean) / self.x_std
        z = self.encoder(xs)
        z_q, codes, quant_loss = self.quantize(z)
        xs_hat = self.decoder(z + (z_q - z).detach())  # straight-through: gradients of x_hat reach the encoder
        return RQVAEOutput(xs_hat * self.x_std + self.x_mean, codes, ((xs_hat - xs) ** 2).mean(), quant_loss)

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, seed: int) -> None:
        """TIGER's k-means initialisation: codebook l = k-means centroids of the level-l latent residuals of
        x: (B, d) float32, the first training batch (B >= K)."""
        if x.shape[0] < self.codebook_size:
            raise QarmError(f"k-means initialisation needs a first batch of >= codebook_size={self.codebook_size} "
                            f"items, got {x.shape[0]}: raise batch_size or lower codebook_size")
        residual = self.encoder((x - self.x_mean) / self.x_std).cpu().numpy().astype(np.float32)
        for level in range(self.levels):
            km = faiss_utils.faiss_kmeans(np.ascontiguousarray(residual), self.codebook_size,
                                          niter=self.cfg.kmeans_niter, seed=seed + level,
                                          max_points_per_centroid=None, use_gpu=False)
            self.codebooks[level] = torch.from_numpy(km.centroids).to(self.codebooks.device)
            code = torch.cdist(torch.from_numpy(residual), torch.from_numpy(km.centroids)).argmin(1)
            residual = residual - km.centroids[code.numpy()]

    def fit(self, x: np.ndarray, seed: int = 0, device: str | torch.device = "cpu") -> RQVAE:
        """Train in place on `x: (N, d) float32` (AdamW, shuffled mini-batches, seeded) on `device`, where the
        model then stays; see fit_rq_vae."""
        self.to(device)
        xt = torch.from_numpy(faiss_utils.as_float32_matrix(x)).to(device)
        if xt.shape[1] != self.input_dim:
            raise QarmError(f"x must have d={self.input_dim} columns, got {xt.shape[1]}")
        rng = np.random.default_rng(seed)
        with torch.no_grad():
            self.x_mean.copy_(xt.mean(0))
            self.x_std.copy_(xt.std(0, unbiased=False).clamp_min(1e-6))
        opt = torch.optim.AdamW(self.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        bs = self.cfg.batch_size
        for epoch in range(self.cfg.epochs):
            perm = torch.from_numpy(rng.permutation(xt.shape[0])).to(xt.device)
            if epoch == 0 and self.cfg.kmeans_init:
                self.init_codebooks(xt[perm[:bs]], seed)
            self.train()
            sums, n_seen = np.zeros(3), 0
            for start in range(0, xt.shape[0], bs):
                batch = xt[perm[start:start + bs]]
                out = self(batch)
                opt.zero_grad(set_to_none=True)
                out.loss.backward()
                opt.step()
                sums += np.array([out.loss.item(), out.recon_loss.item(), out.quant_loss.item()]) * len(batch)
                n_seen += len(batch)
            loss, recon, quant = (sums / n_seen).tolist()
            self.history.append({"epoch": epoch + 1, "loss": loss, "recon_loss": recon, "quant_loss": quant})
        self.eval()
        return self

    @torch.no_grad()
    def encode(self, x: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        """`x: (N, d)` -> `codes: (N, L) int64`."""
        xt = torch.from_numpy(faiss_utils.as_float32_matrix(x)).to(self.x_mean.device)
        self.eval()
        parts = [self.quantize(self.encoder((xt[s:s + batch_size] - self.x_mean) / self.x_std))[1]
                 for s in range(0, xt.shape[0], batch_size)]
        return torch.cat(parts).cpu().numpy().astype(np.int64)

    @torch.no_grad()
    def decode(self, codes: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        """`codes: (N, l)`, l <= L -> `(N, d) float32` = Dec(sum of the first l levels' code vectors)."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or not 1 <= codes.shape[1] <= self.levels or not np.issubdtype(codes.dtype, np.integer):
            raise QarmError(f"codes must be integer (N, l) with 1 <= l <= L={self.levels}, got {codes.dtype} {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise QarmError(f"codes must lie in [0, K={self.codebook_size}), got [{codes.min()}, {codes.max()}]")
        self.eval()
        ct = torch.from_numpy(codes.astype(np.int64)).to(self.x_mean.device)
        parts = []
        for s in range(0, ct.shape[0], batch_size):
            c = ct[s:s + batch_size]
            z_q = sum(self.codebooks[lv][c[:, lv]] for lv in range(c.shape[1]))
            parts.append(self.decoder(z_q) * self.x_std + self.x_mean)
        return torch.cat(parts).cpu().numpy().astype(np.float32)

    def save(self, path: str | os.PathLike[str]) -> None:
        """`<path>/rq_vae.safetensors` (state dict) + `<path>/rq_vae.json` (input_dim, config, history)."""
        arrays = {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}
        meta = {"input_dim": self.input_dim, "levels": self.levels, "codebook_size": self.codebook_size,
                "config": asdict(self.cfg), "history": self.history}
        save_artifact(path, KIND, arrays, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RQVAE:
        arrays, meta = load_artifact(path, KIND)
        cfg_dict = dict(meta["config"])
        cfg_dict["hidden"] = tuple(cfg_dict["hidden"])
        model = cls(int(meta["input_dim"]), int(meta["levels"]), int(meta["codebook_size"]), RQVAEConfig(**cfg_dict))
        try:
            model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})
        except RuntimeError as e:
            raise QarmError(f"{path}: weights do not match the saved config ({e})") from e
        model.history = list(meta.get("history", []))
        model.eval()
        return model


def fit_rq_vae(x: np.ndarray, levels: int = 3, codebook_size: int = 256, cfg: RQVAEConfig | None = None,
               seed: int = 0, device: str | torch.device = "cpu") -> RQVAE:
    """Build and train an RQ-VAE of L = `levels` codebooks of K = `codebook_size` codes on `x: (N, d) float32`
    on `device`; weights are initialised (on CPU) from `seed` without touching torch's global RNG. Per-epoch
    losses are in `.history`."""
    cfg = cfg or RQVAEConfig()
    x = faiss_utils.as_float32_matrix(x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RQVAE(x.shape[1], levels, codebook_size, cfg)
    return model.fit(x, seed=seed, device=device)
