"""RQ-Kmeans: residual k-means codes (QARM §3.3; DESIGN.md "Quantize").

Glossary: N items, d embedding dim, L levels, K codebook size.

    R^1 = Kmeans(M, K),  M^1 = M - NearestRep(M, R^1),  ...,  R^L = Kmeans(M^{L-1}, K)
    code: r_l = argmin_k ||m^{l-1} - R^l_k||^2 (lowest k on ties),  m^l = m^{l-1} - R^l_{r_l}

The codebooks are faiss k-means centroids fitted level by level on the residuals (on GPU when faiss sees
one). Encoding asks faiss for the nearest centroid and *certifies* it: a row whose faiss top-2 gap is
within faiss's float32 error bound is rescored exactly (reference.exact_sq_l2) over widening candidate
sets, so the result equals reference.reference_rq_encode bit for bit, ties included.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from qarm.errors import QarmError
from qarm.quantize import faiss_utils
from qarm.quantize.faiss_utils import GpuChoice
from qarm.quantize.io import load_artifact, save_artifact
from qarm.quantize.reference import exact_sq_l2

KIND = "rq_kmeans"
_EPS32 = 2.0**-23
_RESCORE_FLOATS = 1 << 22  # rows x candidates x d float64 values per rescoring chunk (32 MiB)


def _error_bound(m: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Per-row bound on |faiss float32 L2 distance - exact distance| (BLAS form ||x||^2+||c||^2-2<x,c>), x4 slack.

    The squared norms are summed in float32 (no (N, d) float64 copy); their relative error (~d * 2^-24)
    is absorbed by the slack factor.
    """
    d = m.shape[1]
    cmax = float(np.einsum("ij,ij->i", codebook, codebook).max())
    return 4.0 * (d + 3) * _EPS32 * (np.einsum("ij,ij->i", m, m).astype(np.float64) + cmax)


def mean_square(m: np.ndarray, chunk: int = 1 << 16) -> float:
    """Mean of m**2 over all elements, accumulated in float64 chunk by chunk (no full float64 copy)."""
    total = sum(float(np.einsum("ij,ij->", c, c, dtype=np.float64)) for c in
                (m[s:s + chunk] for s in range(0, m.shape[0], chunk)))
    return total / m.size


def _rescore(m: np.ndarray, codebook: np.ndarray, index: Any, bound: np.ndarray) -> np.ndarray:
    """Exact nearest centroid of rows `m: (n, d)`, over faiss candidates widened until certified."""
    k_total = codebook.shape[0]
    labels = np.empty(m.shape[0], dtype=np.int64)
    todo = np.arange(m.shape[0])
    ncand = min(k_total, 8)
    while todo.size:
        _, cand = index.search(m[todo], ncand)
        cand = np.sort(cand.astype(np.int64), axis=1)  # index order, so argmin's first hit is the lowest k
        exact = np.empty(cand.shape, dtype=np.float64)
        step = max(1, _RESCORE_FLOATS // (ncand * m.shape[1]))
        for s in range(0, todo.size, step):
            rows = todo[s:s + step]
            exact[s:s + step] = exact_sq_l2(m[rows][:, None, :], codebook[cand[s:s + step]])
        best = exact.min(1)
        labels[todo] = cand[np.arange(todo.size), exact.argmin(1)]
        if ncand == k_total:
            break
        # A centroid outside the candidates is farther than the farthest candidate minus 2 bounds.
        certified = exact.max(1) - best > 2.0 * bound[todo]
        todo = todo[~certified]
        ncand = min(k_total, ncand * 4)
    return labels


def top1_centroid(m: np.ndarray, codebook: np.ndarray, *, use_gpu: bool = False) -> np.ndarray:
    """faiss's argmin_k ||m_i - codebook_k||^2 in float32 (ties and near-ties as faiss resolves them).
    m: (N, d) float32, codebook: (K, d) float32 -> (N,) int64."""
    if codebook.shape[0] == 1:
        return np.zeros(m.shape[0], dtype=np.int64)
    index = faiss_utils.flat_index(m.shape[1], "l2", use_gpu=use_gpu)
    index.add(codebook)
    return index.search(m, 1)[1][:, 0].astype(np.int64)


def nearest_centroid(m: np.ndarray, codebook: np.ndarray, *, use_gpu: bool = False) -> np.ndarray:
    """Exact argmin_k ||m_i - codebook_k||^2 (lowest k on ties). m: (N, d) float32, codebook: (K, d) -> (N,) int64."""
    k_total = codebook.shape[0]
    if k_total == 1:
        return np.zeros(m.shape[0], dtype=np.int64)
    index = faiss_utils.flat_index(m.shape[1], "l2", use_gpu=use_gpu)
    index.add(codebook)
    dist, cand = index.search(m, 2)
    bound = _error_bound(m, codebook)
    labels = cand[:, 0].astype(np.int64)
    unsure = (dist[:, 1].astype(np.float64) - dist[:, 0]) <= 2.0 * bound
    if unsure.any():
        labels[unsure] = _rescore(m[unsure], codebook, index, bound[unsure])
    return labels


def rq_encode(x: np.ndarray, codebooks: np.ndarray, *, use_gpu: bool = False) -> np.ndarray:
    """Residual codes of `x: (N, d)` under `codebooks: (L, K, d) float32` -> `codes: (N, L) int64`."""
    m = faiss_utils.as_float32_matrix(x).copy()
    codebooks = np.ascontiguousarray(codebooks, dtype=np.float32)
    if codebooks.ndim != 3 or codebooks.shape[2] != m.shape[1]:
        raise QarmError(f"codebooks must be (L, K, d={m.shape[1]}), got shape {codebooks.shape}")
    codes = np.empty((m.shape[0], codebooks.shape[0]), dtype=np.int64)
    for level, book in enumerate(codebooks):
        codes[:, level] = nearest_centroid(m, book, use_gpu=use_gpu)
        m -= book[codes[:, level]]
    return codes


def rq_decode(codes: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """Sum of the chosen centroids. codes: (N, l) with l <= L (a prefix decodes its first l levels), codebooks:
    (L, K, d) float32 -> (N, d) float32."""
    codes = np.asarray(codes)
    n_levels, k_total, _ = codebooks.shape
    if codes.ndim != 2 or not 1 <= codes.shape[1] <= n_levels:
        raise QarmError(f"codes must be (N, l) with 1 <= l <= L={n_levels}, got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise QarmError(f"codes must be integers, got dtype {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() >= k_total):
        raise QarmError(f"codes must lie in [0, K={k_total}), got values in [{codes.min()}, {codes.max()}]")
    out = np.zeros((codes.shape[0], codebooks.shape[2]), dtype=np.float32)
    for level in range(codes.shape[1]):
        out += codebooks[level][codes[:, level]]
    return out


class RQKmeans:
    """Residual k-means quantizer: `fit(x) -> self`, `encode(x) -> (N, L) int64`, `decode(codes) -> (N, d)`.

    levels L, codebook_size K, niter k-means iterations per level, seed (level l uses seed + l),
    max_points_per_centroid: None trains every level on all N items (QARM's Kmeans(M, K)); an int lets
    faiss subsample K * that many points per level. gpu: "auto" uses faiss's GPU when it sees one.
    K > N raises a QarmError at fit (faiss cannot place K centroids on fewer points); K above the number of
    *distinct* points is allowed: faiss splits empty clusters, and the diagnostics show the low utilisation.
    After fit: `codebooks: (L, K, d) float32`, `fit_stats_`: per level {level, kmeans_seconds, objective,
    imbalance_factor[, residual_mse]} (residual_mse = mean squared residual per element after the level; absent
    for the last level, whose assignment fit() does not need: `encode` gives it).
    """

    def __init__(self, levels: int = 3, codebook_size: int = 256, niter: int = 20, seed: int = 0,
                 max_points_per_centroid: int | None = None, gpu: GpuChoice = "auto") -> None:
        for name, value in (("levels", levels), ("codebook_size", codebook_size), ("niter", niter)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise QarmError(f"{name} must be an int >= 1, got {value!r}")
        if max_points_per_centroid is not None and (not isinstance(max_points_per_centroid, int)
                                                    or max_points_per_centroid < 1):
            raise QarmError(f"max_points_per_centroid must be None or an int >= 1, got {max_points_per_centroid!r}")
        self.levels, self.codebook_size, self.niter, self.seed = levels, codebook_size, niter, int(seed)
        self.max_points_per_centroid = max_points_per_centroid
        self.gpu = gpu
        self.use_gpu = faiss_utils.resolve_gpu(gpu)
        self.codebooks: np.ndarray | None = None
        self.fit_stats_: list[dict[str, float]] = []

    def fit(self, x: np.ndarray) -> RQKmeans:
        """Fit L codebooks level by level on the residuals of `x: (N, d) float32`."""
        m = faiss_utils.as_float32_matrix(x).copy()
        if m.shape[0] < self.codebook_size:
            raise QarmError(f"codebook_size={self.codebook_size} exceeds the number of items N={m.shape[0]}: "
                            f"level 1 k-means needs at least K points; use codebook_size <= {m.shape[0]}")
        books, stats = [], []
        for level in range(self.levels):
            km = faiss_utils.faiss_kmeans(m, self.codebook_size, niter=self.niter, seed=self.seed + level,
                                          max_points_per_centroid=self.max_points_per_centroid,
                                          use_gpu=self.use_gpu)
            books.append(km.centroids)
            stat = {"level": level + 1, "kmeans_seconds": km.seconds, "objective": km.objective,
                    "imbalance_factor": km.imbalance_factor}
            if level + 1 < self.levels:  # the next level trains on these residuals; the last level's
                # codes come from encode(). Training residuals use faiss's plain top-1 assignment: a float
                # near-tie changes a residual by ~1e-7 of its norm, too little to move a centroid, and the
                # certified exact rule is applied by encode(), which defines the codes.
                codes = top1_centroid(m, km.centroids, use_gpu=self.use_gpu)
                m -= km.centroids[codes]
                stat["residual_mse"] = mean_square(m)
            stats.append(stat)
        self.codebooks = np.stack(books).astype(np.float32)
        self.fit_stats_ = stats
        return self

    def _books(self) -> np.ndarray:
        if self.codebooks is None:
            raise QarmError("RQKmeans is not fitted: call .fit(x) or RQKmeans.load(dir) first")
        return self.codebooks

    def encode(self, x: np.ndarray) -> np.ndarray:
        """`x: (N, d)` -> `codes: (N, L) int64` by the residual rule (exact, lowest k on ties)."""
        books = self._books()
        return rq_encode(x, books, use_gpu=self.use_gpu)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """`codes: (N, l)`, l <= L -> `(N, d) float32`, the sum of the first l levels' centroids."""
        return rq_decode(codes, self._books())

    def save(self, path: str | os.PathLike[str]) -> None:
        """`<path>/rq_kmeans.safetensors` (codebooks) + `<path>/rq_kmeans.json` (settings, fit stats)."""
        meta = {"levels": self.levels, "codebook_size": self.codebook_size, "niter": self.niter,
                "seed": self.seed, "max_points_per_centroid": self.max_points_per_centroid,
                "dim": int(self._books().shape[2]), "fit_stats": self.fit_stats_}
        save_artifact(path, KIND, {"codebooks": self._books()}, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, gpu: GpuChoice = "auto") -> RQKmeans:
        """Read what `save` wrote; the codebooks' shape must match the saved settings."""
        arrays, meta = load_artifact(path, KIND)
        obj = cls(levels=meta["levels"], codebook_size=meta["codebook_size"], niter=meta["niter"],
                  seed=meta["seed"], max_points_per_centroid=meta["max_points_per_centroid"], gpu=gpu)
        books = arrays.get("codebooks")
        expected = (meta["levels"], meta["codebook_size"], meta["dim"])
        if books is None or books.shape != expected or books.dtype != np.float32:
            got = None if books is None else (books.shape, books.dtype)
            raise QarmError(f"{path}: codebooks must be float32 {expected}, got {got}")
        obj.codebooks, obj.fit_stats_ = books, list(meta.get("fit_stats", []))
        return obj
