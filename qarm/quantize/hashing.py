"""Seeded, deterministic 64-bit hashing in numpy: splitmix64 (Steele, Lea & Flood 2014, the finaliser of Java's
SplittableRandom), used to hash code n-grams into table rows and to recognise fitted embedding rows.

All arithmetic is on uint64 arrays and wraps modulo 2**64, so the values are the same on every platform.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 of each element of `z: (...)` uint64 -> (...) uint64."""
    z = np.asarray(z, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def hash_columns(cols: np.ndarray, seed: int) -> np.ndarray:
    """Order-sensitive hash of each row of `cols: (N, n)` non-negative integers (< 2**64), salted by `seed`:
    h = splitmix64(seed); h = splitmix64(h ^ col_j) for j = 0..n-1 -> (N,) uint64."""
    cols = np.asarray(cols)
    h = np.full(cols.shape[0], splitmix64(np.array([seed], dtype=np.uint64))[0], dtype=np.uint64)
    for j in range(cols.shape[1]):
        h = splitmix64(h ^ cols[:, j].astype(np.uint64))
    return h


def hash_rows(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hash of each row's bytes: `x: (N, d) float32` -> (N,) uint64 (bitwise: -0.0 and 0.0 differ)."""
    words = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return hash_columns(words, seed=seed + x.shape[1])
