"""RQ-Kmeans: residual k-means codes (QARM §3.3; docs/codes.md).

Glossary: N items, d embedding dim, L levels, K codebook size.

    R^1 = Kmeans(M, K),  M^1 = M - NearestRep(M, R^1),  ...,  R^L = Kmeans(M^{L-1}, K)
    code: r_l = argmin_k ||m^{l-1} - R^l_k||^2 (lowest k on ties),  m^l = m^{l-1} - R^l_{r_l}

The codebooks are faiss k-means centroids fitted level by level on the residuals (on GPU when faiss sees
one). Encoding on CPU is qarm.quantize.gemm_encode: one blocked float32 GEMM per level whose top-2 gap
*certifies* each row's nearest centroid against a float error bound; uncertain rows are rescored exactly.
On GPU, faiss gives the top-2 (`faiss_rq_encode`) and a row whose gap is within faiss's float32 error bound
is rescored exactly (reference.exact_sq_l2) over widening candidate sets. Both equal
reference.reference_rq_encode bit for bit, ties included.

Two level options extend the plain rule (both off by default; the plain path is untouched by them):

- last_level="fsq" (QARM V2's Res-KmeansFSQ): levels 1..L-1 are k-means, level L is qarm.quantize.fsq.FSQ of
  the residual m^{L-1}, vocabulary prod(fsq_levels). `codebooks` then holds the L - 1 k-means levels.
- balanced=True (OneRec): every k-means level is qarm.quantize.balanced.balanced_kmeans, equal-size clusters,
  and the next level trains on the residuals of the *balanced* assignment. Encoding an item of the fit set
  returns its fitted (balanced) code: `encode(x)` of the fit matrix itself returns `fit_codes_`, and any row
  bitwise equal to a fitted row takes that row's fitted code (the lowest fitted item_idx among equal rows);
  every other row gets the nearest centroid per level with capacities ignored (the plain residual rule).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np

from qarm.errors import QarmError
from qarm.quantize import faiss_utils
from qarm.quantize.balanced import balanced_kmeans
from qarm.quantize.faiss_utils import GpuChoice
from qarm.quantize.fitted import FittedRows
from qarm.quantize.fsq import FSQ, check_levels
from qarm.quantize.gemm_encode import gemm_rq_encode
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


def rq_encode(x: np.ndarray, codebooks: np.ndarray, *, use_gpu: bool = False,
              threads: int | None = None) -> np.ndarray:
    """Exact residual codes of `x: (N, d)` under `codebooks: (L, K, d) float32` -> `codes: (N, L) int64`: the
    blocked-GEMM encoder on CPU (`threads`: None = the BLAS threads), faiss's on GPU."""
    xf = faiss_utils.as_float32_matrix(x)
    codebooks = np.ascontiguousarray(codebooks, dtype=np.float32)
    if codebooks.ndim != 3 or codebooks.shape[2] != xf.shape[1]:
        raise QarmError(f"codebooks must be (L, K, d={xf.shape[1]}), got shape {codebooks.shape}")
    if use_gpu:
        return faiss_rq_encode(xf, codebooks, use_gpu=True)
    return gemm_rq_encode(xf, codebooks, threads=threads)


def faiss_rq_encode(x: np.ndarray, codebooks: np.ndarray, *, use_gpu: bool = False) -> np.ndarray:
    """rq_encode by certified faiss searches (the GPU path; on CPU the GEMM encoder is faster and gives the
    same codes). x: (N, d) float32, codebooks: (L, K, d) float32 -> codes: (N, L) int64."""
    m = np.array(x, dtype=np.float32, order="C")
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
    last_level: "kmeans" or "fsq" (level L = FSQ with `fsq_levels` bins per projected dim, module docstring);
    balanced: equal-size k-means levels, `balanced_iters` balanced rounds each (module docstring).
    K > N raises a QarmError at fit (faiss cannot place K centroids on fewer points); K above the number of
    *distinct* points is allowed: faiss splits empty clusters, and the diagnostics show the low utilisation.
    After fit: `codebooks: (L_k, K, d) float32` (L_k = L k-means levels, L - 1 with an FSQ last level), `fsq`
    (the fitted FSQ or None), `vocab_sizes` (per level), `fit_stats_`: per level {level, kmeans_seconds,
    objective, imbalance_factor[, residual_mse][, balanced_rounds]} (residual_mse = mean squared residual per
    element after the level; absent for the last level, whose assignment fit() does not need: `encode` gives it;
    an FSQ level has {level, fsq_seconds}).
    """

    def __init__(self, levels: int = 3, codebook_size: int = 256, niter: int = 20, seed: int = 0,
                 max_points_per_centroid: int | None = None, gpu: GpuChoice = "auto", *,
                 last_level: str = "kmeans", fsq_levels: tuple[int, ...] = (4, 4, 4), balanced: bool = False,
                 balanced_iters: int = 10) -> None:
        for name, value in (("levels", levels), ("codebook_size", codebook_size), ("niter", niter)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise QarmError(f"{name} must be an int >= 1, got {value!r}")
        if max_points_per_centroid is not None and (not isinstance(max_points_per_centroid, int)
                                                    or max_points_per_centroid < 1):
            raise QarmError(f"max_points_per_centroid must be None or an int >= 1, got {max_points_per_centroid!r}")
        if last_level not in ("kmeans", "fsq"):
            raise QarmError(f"last_level must be 'kmeans' or 'fsq', got {last_level!r}")
        if not isinstance(balanced_iters, int) or balanced_iters < 0:
            raise QarmError(f"balanced_iters must be an int >= 0, got {balanced_iters!r}")
        self.levels, self.codebook_size, self.niter, self.seed = levels, codebook_size, niter, int(seed)
        self.max_points_per_centroid = max_points_per_centroid
        self.gpu = gpu
        self.use_gpu = faiss_utils.resolve_gpu(gpu)
        self.last_level = last_level
        self.fsq_levels = check_levels(fsq_levels)
        self.balanced, self.balanced_iters = bool(balanced), balanced_iters
        self.codebooks: np.ndarray | None = None
        self.fsq: FSQ | None = None
        self.fitted: FittedRows | None = None
        self.fit_stats_: list[dict[str, float]] = []

    @property
    def kmeans_levels(self) -> int:
        """Number of k-means levels: L, or L - 1 with an FSQ last level."""
        return self.levels - (self.last_level == "fsq")

    @property
    def vocab_sizes(self) -> tuple[int, ...]:
        """Vocabulary of each level: K per k-means level, prod(fsq_levels) for an FSQ last level."""
        tail = (math.prod(self.fsq_levels),) if self.last_level == "fsq" else ()
        return (self.codebook_size,) * self.kmeans_levels + tail

    def fit(self, x: np.ndarray) -> RQKmeans:
        """Fit the k-means levels one by one on the residuals of `x: (N, d) float32`, then the FSQ last level."""
        m = faiss_utils.as_float32_matrix(x).copy()
        if self.kmeans_levels and m.shape[0] < self.codebook_size:
            raise QarmError(f"codebook_size={self.codebook_size} exceeds the number of items N={m.shape[0]}: "
                            f"level 1 k-means needs at least K points; use codebook_size <= {m.shape[0]}")
        books, stats, labels_by_level = [], [], []
        for level in range(self.kmeans_levels):
            needs_residual = level + 1 < self.levels  # the next level (k-means or FSQ) trains on it
            if self.balanced:
                bk = balanced_kmeans(m, self.codebook_size, niter=self.niter, seed=self.seed + level,
                                     iters=self.balanced_iters, max_points_per_centroid=self.max_points_per_centroid,
                                     use_gpu=self.use_gpu)
                centroids, codes = bk.centroids, bk.labels
                stat = {"level": level + 1, "kmeans_seconds": bk.seconds, "objective": bk.objective,
                        "imbalance_factor": 1.0, "balanced_rounds": bk.rounds}
                labels_by_level.append(codes)
            else:
                km = faiss_utils.faiss_kmeans(m, self.codebook_size, niter=self.niter, seed=self.seed + level,
                                              max_points_per_centroid=self.max_points_per_centroid,
                                              use_gpu=self.use_gpu)
                centroids = km.centroids
                stat = {"level": level + 1, "kmeans_seconds": km.seconds, "objective": km.objective,
                        "imbalance_factor": km.imbalance_factor}
                # The last level's codes come from encode(). Training residuals use faiss's plain top-1
                # assignment: a float near-tie changes a residual by ~1e-7 of its norm, too little to move a
                # centroid, and the certified exact rule is applied by encode(), which defines the codes.
                codes = top1_centroid(m, centroids, use_gpu=self.use_gpu) if needs_residual else None
            books.append(centroids)
            if needs_residual:
                m -= centroids[codes]
                stat["residual_mse"] = mean_square(m)
            stats.append(stat)
        d = m.shape[1]
        self.codebooks = np.stack(books).astype(np.float32) if books else np.zeros((0, self.codebook_size, d),
                                                                                    dtype=np.float32)
        self.fsq = None
        if self.last_level == "fsq":
            t0 = time.perf_counter()
            self.fsq = FSQ(self.fsq_levels).fit(m)
            if self.balanced:
                labels_by_level.append(self.fsq.encode(m))
            stats.append({"level": self.levels, "fsq_seconds": time.perf_counter() - t0})
        self.fitted = FittedRows.build(x, np.stack(labels_by_level, axis=1)) if self.balanced else None
        self.fit_stats_ = stats
        return self

    def _books(self) -> np.ndarray:
        if self.codebooks is None:
            raise QarmError("RQKmeans is not fitted: call .fit(x) or RQKmeans.load(dir) first")
        return self.codebooks

    def encode(self, x: np.ndarray) -> np.ndarray:
        """`x: (N, d)` -> `codes: (N, L) int64`: the residual rule (exact, lowest k on ties) for the k-means
        levels, FSQ of the residual for an FSQ last level; balanced: fitted rows keep their fitted codes."""
        books = self._books()
        xf = faiss_utils.as_float32_matrix(x)
        codes = rq_encode(xf, books, use_gpu=self.use_gpu)
        if self.fsq is not None:
            m = xf.copy()
            for level, book in enumerate(books):  # the same float32 steps as rq_encode's residuals
                m -= book[codes[:, level]]
            codes = np.concatenate([codes, self.fsq.encode(m)[:, None]], axis=1)
        if self.fitted is not None:
            codes = self.fitted.apply(xf, codes)
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """`codes: (N, l)`, l <= L -> `(N, d) float32`, the sum of the first l levels' reconstructions."""
        books = self._books()
        codes = np.asarray(codes)
        if codes.ndim != 2 or not 1 <= codes.shape[1] <= self.levels:
            raise QarmError(f"codes must be (N, l) with 1 <= l <= L={self.levels}, got shape {codes.shape}")
        n_k = min(codes.shape[1], books.shape[0])
        out = rq_decode(codes[:, :n_k], books) if n_k else np.zeros((codes.shape[0], books.shape[2]), np.float32)
        if codes.shape[1] > books.shape[0] and self.fsq is not None:
            out = out + self.fsq.decode(codes[:, -1])
        return out

    def save(self, path: str | os.PathLike[str]) -> None:
        """`<path>/rq_kmeans.safetensors` (codebooks[, FSQ state][, fitted codes]) + `<path>/rq_kmeans.json`
        (settings, fit stats)."""
        books = self._books()
        meta = {"levels": self.levels, "codebook_size": self.codebook_size, "niter": self.niter,
                "seed": self.seed, "max_points_per_centroid": self.max_points_per_centroid,
                "dim": int(books.shape[2]), "fit_stats": self.fit_stats_, "last_level": self.last_level,
                "fsq_levels": list(self.fsq_levels), "balanced": self.balanced,
                "balanced_iters": self.balanced_iters}
        arrays = {"codebooks": books}
        if self.fsq is not None:
            arrays.update(self.fsq.arrays())
        if self.fitted is not None:
            arrays.update(fit_codes=self.fitted.codes, fit_row_hash=self.fitted.row_hash)
            meta["fit_digest"] = self.fitted.digest
        save_artifact(path, KIND, arrays, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, gpu: GpuChoice = "auto") -> RQKmeans:
        """Read what `save` wrote; the codebooks' shape must match the saved settings. Files written before
        the FSQ / balanced options load as plain RQ-Kmeans."""
        arrays, meta = load_artifact(path, KIND)
        obj = cls(levels=meta["levels"], codebook_size=meta["codebook_size"], niter=meta["niter"],
                  seed=meta["seed"], max_points_per_centroid=meta["max_points_per_centroid"], gpu=gpu,
                  last_level=meta.get("last_level", "kmeans"), fsq_levels=tuple(meta.get("fsq_levels", (4, 4, 4))),
                  balanced=meta.get("balanced", False), balanced_iters=meta.get("balanced_iters", 10))
        books = arrays.get("codebooks")
        expected = (obj.kmeans_levels, meta["codebook_size"], meta["dim"])
        if books is None or books.shape != expected or books.dtype != np.float32:
            got = None if books is None else (books.shape, books.dtype)
            raise QarmError(f"{path}: codebooks must be float32 {expected}, got {got}")
        obj.codebooks, obj.fit_stats_ = books, list(meta.get("fit_stats", []))
        if obj.last_level == "fsq":
            obj.fsq = FSQ.from_arrays(obj.fsq_levels, arrays, str(path))
        if obj.balanced:
            fit_codes, row_hash = arrays.get("fit_codes"), arrays.get("fit_row_hash")
            if fit_codes is None or row_hash is None or fit_codes.ndim != 2 or fit_codes.shape[1] != obj.levels \
                    or row_hash.shape != (fit_codes.shape[0],) or "fit_digest" not in meta:
                raise QarmError(f"{path}: a balanced quantizer needs fit_codes (N, L={obj.levels}), "
                                "fit_row_hash (N,) and fit_digest")
            obj.fitted = FittedRows(fit_codes, row_hash, meta["fit_digest"])
        return obj
