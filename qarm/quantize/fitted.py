"""Remembering a fit set's codes: a quantizer whose fitted codes are not a function of the item alone (balanced
k-means: capacities depend on the other items) returns them again when asked to encode a fitted item.

Rows are recognised by a 64-bit hash of their float32 bytes (qarm.quantize.hashing.hash_rows; two different
rows share a hash with probability ~N^2 / 2^65) and the whole fit matrix by a blake2b digest of its bytes.
"""

from __future__ import annotations

import hashlib

import numpy as np

from qarm.quantize.hashing import hash_rows


def matrix_digest(x: np.ndarray) -> str:
    """blake2b-128 hex digest of `x: (N, d)` as C-contiguous float32, with its shape."""
    arr = np.ascontiguousarray(x, dtype=np.float32)
    h = hashlib.blake2b(digest_size=16)
    h.update(str(arr.shape).encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


class FittedRows:
    """The fit set's codes `codes: (N, L) int64`, its row hashes `row_hash: (N,) uint64` and matrix digest."""

    def __init__(self, codes: np.ndarray, row_hash: np.ndarray, digest: str) -> None:
        self.codes = np.asarray(codes, dtype=np.int64)
        self.row_hash = np.asarray(row_hash, dtype=np.uint64)
        self.digest = digest
        self._order = np.argsort(self.row_hash, kind="stable")  # equal hashes: lowest fitted index first

    @classmethod
    def build(cls, x: np.ndarray, codes: np.ndarray) -> FittedRows:
        """Remember `codes: (N, L)` for the fit matrix `x: (N, d)`."""
        return cls(codes, hash_rows(x), matrix_digest(x))

    def apply(self, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """`codes: (M, L)` computed for `x: (M, d)` by the plain rule, with fitted rows given their fitted codes:
        the fit matrix itself gets exactly the fitted codes; another row bitwise equal to a fitted row gets the
        code of the lowest fitted index with those bytes."""
        if x.shape[0] == self.codes.shape[0] and matrix_digest(x) == self.digest:
            return self.codes.copy()
        h = hash_rows(x)
        sorted_hash = self.row_hash[self._order]
        pos = np.minimum(np.searchsorted(sorted_hash, h), sorted_hash.size - 1)
        hit = sorted_hash[pos] == h
        out = codes.copy()
        out[hit] = self.codes[self._order[pos[hit]]]
        return out
