"""Finite scalar quantisation (FSQ) of residual vectors: QARM V2's last code level (Res-KmeansFSQ).

Glossary: N items, d embedding dim, p = len(levels) FSQ dims, L_j bins of dim j, V = prod(L_j) codes.

FSQ (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple") projects a vector to a few dims,
bounds each dim (tanh there; QARM V2 writes `Z = round(L * sigmoid(M2 W))`, W in R^{d x 13}, reference/anchors.md
§1.7) and rounds each bounded dim to L_j levels; the code is the mixed-radix index of the p digits, so the
codebook is implicit: no lookup table, no training of centroids. Here the projection and the bound are fixed
from the data in closed form, with no iterations and no seed:

    z = (r - mean) . P_j          P: the top-p principal directions of the fitted residuals r (eigh of their
                                  covariance, each direction's largest-magnitude entry made positive)
    digit_j = #{b in B_j : b <= z_j}   B_j: the L_j - 1 quantiles k / L_j (k = 1..L_j-1) of z_j over the fit set
    code = ((digit_0 * L_1 + digit_1) * L_2 + digit_2) ...    (mixed radix, dim 0 most significant)

Why: the empirical CDF plays the part of tanh / sigmoid as the bounding map (`digit = floor(L_j * F_j(z_j))`),
but it fills every bin with the same number of fitted items, so each digit carries the most information its L_j
bins allow (log L_j); principal directions carry the most residual variance (items differ most along them, so
they split colliding items best) and are decorrelated, so the product grid is used close to evenly. Learned
projections (QARM V2) would need a training loop and a seed for no collision benefit on a last level whose
only job is to separate items that the k-means levels lumped together.

Decoding maps each digit to the mean z_j of the fitted items in its bin, so `decode(code)` is the residual's
reconstruction within the p-dim projection (the rest of the residual is not coded: FSQ cuts collisions, it
is not meant to reconstruct).

Projections are summed elementwise in float64 over the contiguous last axis (qarm.quantize.reference.exact_ip),
so an item's digits do not depend on which other rows are encoded with it: encoding the fit set reproduces the
digits the quantiles were taken from, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from qarm.errors import QarmError
from qarm.quantize.reference import exact_ip

_CHUNK_FLOATS = 1 << 22  # rows x p x d float64 values per projection chunk (32 MiB)


def check_levels(levels: Sequence[int]) -> tuple[int, ...]:
    """Validate FSQ bins per dim: a non-empty sequence of ints >= 2 whose product is below 2**62."""
    out = tuple(int(v) for v in levels)
    if not out or any(v < 2 for v in out) or any(int(v) != v for v in levels):
        raise QarmError(f"fsq_levels must be a non-empty list of ints >= 2, got {list(levels)!r}")
    if math.prod(out) >= 2**62:
        raise QarmError(f"fsq_levels {list(out)}: the product of the bins must stay below 2**62")
    return out


def mixed_radix(digits: np.ndarray, levels: Sequence[int]) -> np.ndarray:
    """`digits: (N, p)` int64 with digit j in [0, levels[j]) -> `(N,)` int64 code, dim 0 most significant."""
    code = np.zeros(digits.shape[0], dtype=np.int64)
    for j, lv in enumerate(levels):
        code = code * int(lv) + digits[:, j]
    return code


def split_radix(code: np.ndarray, levels: Sequence[int]) -> np.ndarray:
    """Inverse of `mixed_radix`: `code: (N,)` int64 in [0, prod(levels)) -> `digits: (N, p)` int64."""
    code = np.asarray(code, dtype=np.int64).copy()
    digits = np.empty((code.shape[0], len(levels)), dtype=np.int64)
    for j in reversed(range(len(levels))):
        digits[:, j] = code % int(levels[j])
        code //= int(levels[j])
    return digits


def principal_directions(r: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean `(d,)` and top-p principal directions `(p, d)` (float64, unit rows) of `r: (N, d)`: eigenvectors of
    the covariance by decreasing eigenvalue (ties: eigh's order), each signed so its largest-magnitude entry
    (first on ties) is positive."""
    r64 = r.astype(np.float64)
    mean = r64.mean(0)
    centred = r64 - mean
    cov = centred.T @ centred / max(1, r.shape[0])
    vals, vecs = np.linalg.eigh(cov)  # ascending
    order = np.argsort(-vals, kind="stable")[:p]
    dirs = vecs[:, order].T.copy()
    pivot = np.abs(dirs).argmax(1)
    dirs *= np.where(dirs[np.arange(p), pivot] < 0, -1.0, 1.0)[:, None]
    return mean, dirs


class FSQ:
    """Finite scalar quantiser of residuals `r: (N, d)`: `fit(r) -> self`, `encode(r) -> (N,) int64` in [0, V),
    `decode(code) -> (N, d) float32`; `digits(r) -> (N, p)` gives the per-dim bins. After fit: `mean (d,)`,
    `directions (p, d)`, `boundaries (p, max L_j - 1)` (row j's first L_j - 1 entries; +inf pads), `centres
    (p, max L_j)`, all float64."""

    def __init__(self, levels: Sequence[int]) -> None:
        self.levels = check_levels(levels)
        self.vocab = math.prod(self.levels)
        self.mean: np.ndarray | None = None
        self.directions: np.ndarray | None = None
        self.boundaries: np.ndarray | None = None
        self.centres: np.ndarray | None = None

    def _state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.mean is None or self.directions is None or self.boundaries is None or self.centres is None:
            raise QarmError("FSQ is not fitted: call .fit(r) first")
        return self.mean, self.directions, self.boundaries, self.centres

    def project(self, r: np.ndarray) -> np.ndarray:
        """`r: (N, d)` -> `z: (N, p)` float64, `(r - mean) . direction_j` summed elementwise per row."""
        mean, dirs, _, _ = self._state()
        r = np.asarray(r)
        if r.ndim != 2 or r.shape[1] != dirs.shape[1]:
            raise QarmError(f"FSQ input must be (N, d={dirs.shape[1]}), got shape {r.shape}")
        z = np.empty((r.shape[0], dirs.shape[0]), dtype=np.float64)
        step = max(1, _CHUNK_FLOATS // (dirs.shape[0] * dirs.shape[1]))
        for s in range(0, r.shape[0], step):
            centred = r[s:s + step].astype(np.float64) - mean
            z[s:s + step] = exact_ip(centred[:, None, :], dirs[None, :, :])
        return z

    def fit(self, r: np.ndarray) -> FSQ:
        """Directions, bin boundaries (quantiles) and bin centres from the residuals `r: (N, d)`."""
        r = np.asarray(r)
        p = len(self.levels)
        if r.ndim != 2 or r.shape[0] < 1:
            raise QarmError(f"FSQ fit needs a 2-d (N, d) array with N >= 1, got shape {r.shape}")
        if p > r.shape[1]:
            raise QarmError(f"fsq_levels has {p} dims but the residuals have only d={r.shape[1]}; "
                            f"use at most {r.shape[1]} FSQ dims")
        self.mean, self.directions = principal_directions(r, p)
        width = max(self.levels)
        self.boundaries = np.full((p, width - 1), np.inf)
        self.centres = np.zeros((p, width))
        self.boundaries, self.centres = self._bins(self.project(r))
        return self

    def _bins(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Quantile boundaries and per-bin mean centres of the fitted projections `z: (N, p)`."""
        p, width = z.shape[1], max(self.levels)
        bounds = np.full((p, width - 1), np.inf)
        centres = np.zeros((p, width))
        for j, lv in enumerate(self.levels):
            b = np.quantile(z[:, j], np.arange(1, lv) / lv)
            bounds[j, : lv - 1] = b
            digit = np.searchsorted(b, z[:, j], side="right")
            sums = np.bincount(digit, weights=z[:, j], minlength=lv)
            counts = np.bincount(digit, minlength=lv)
            for k in range(lv):
                if counts[k]:
                    centres[j, k] = sums[k] / counts[k]
                else:  # an empty bin (tied quantiles): the middle of its boundaries, or the one it has
                    lo = b[k - 1] if k > 0 else None
                    hi = b[k] if k < lv - 1 else None
                    ends = [v for v in (lo, hi) if v is not None]
                    centres[j, k] = float(np.mean(ends)) if ends else 0.0
        return bounds, centres

    def digits(self, r: np.ndarray) -> np.ndarray:
        """`r: (N, d)` -> `(N, p)` int64 bins, digit j = number of dim j's boundaries <= z_j."""
        _, _, bounds, _ = self._state()
        z = self.project(r)
        out = np.empty(z.shape, dtype=np.int64)
        for j, lv in enumerate(self.levels):
            out[:, j] = np.searchsorted(bounds[j, : lv - 1], z[:, j], side="right")
        return out

    def encode(self, r: np.ndarray) -> np.ndarray:
        """`r: (N, d)` -> `(N,)` int64 mixed-radix codes in [0, prod(levels))."""
        return mixed_radix(self.digits(r), self.levels)

    def decode(self, code: np.ndarray) -> np.ndarray:
        """`code: (N,)` int64 -> `(N, d)` float32: mean + sum_j centre_j[digit_j] * direction_j."""
        mean, dirs, _, centres = self._state()
        code = np.asarray(code)
        if code.ndim != 1 or not np.issubdtype(code.dtype, np.integer):
            raise QarmError(f"FSQ codes must be a 1-d integer array, got shape {code.shape} dtype {code.dtype}")
        if code.size and (code.min() < 0 or code.max() >= self.vocab):
            raise QarmError(f"FSQ codes must lie in [0, {self.vocab}), got values in [{code.min()}, {code.max()}]")
        digits = split_radix(code, self.levels)
        z = np.stack([centres[j, digits[:, j]] for j in range(len(self.levels))], axis=1)
        return (mean + z @ dirs).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named float64 arrays (for safetensors)."""
        mean, dirs, bounds, centres = self._state()
        return {"fsq_mean": mean, "fsq_directions": dirs, "fsq_boundaries": bounds, "fsq_centres": centres}

    @classmethod
    def from_arrays(cls, levels: Sequence[int], arrays: dict[str, np.ndarray], where: str = "") -> FSQ:
        """Rebuild a fitted FSQ from `arrays()`'s output; shapes are checked against `levels`."""
        obj = cls(levels)
        p, width = len(obj.levels), max(obj.levels)
        try:
            mean, dirs = arrays["fsq_mean"], arrays["fsq_directions"]
            bounds, centres = arrays["fsq_boundaries"], arrays["fsq_centres"]
        except KeyError as e:
            raise QarmError(f"{where}: FSQ array {e} missing") from None
        d = mean.shape[0] if mean.ndim == 1 else -1
        want = {"fsq_mean": (d,), "fsq_directions": (p, d), "fsq_boundaries": (p, width - 1),
                "fsq_centres": (p, width)}
        for name, arr in (("fsq_mean", mean), ("fsq_directions", dirs), ("fsq_boundaries", bounds),
                          ("fsq_centres", centres)):
            if arr.shape != want[name] or arr.dtype != np.float64:
                raise QarmError(f"{where}: {name} must be float64 {want[name]}, got {arr.dtype} {arr.shape}")
        obj.mean, obj.directions, obj.boundaries, obj.centres = mean, dirs, bounds, centres
        return obj
