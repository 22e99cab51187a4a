"""VQ top-k codes: equal to brute force (ties, duplicates, both metrics), hand example, edge sizes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qarm.errors import QarmError
from qarm.quantize import vq_codes
from qarm.quantize.reference import reference_topk
from qarm.quantize.vq import topk_neighbours

HYP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_hand_example_order_and_self_exclusion() -> None:
    # Points on a line: inner products with item 3 (x=3) are 0, 3, 6, 9(self), 12 -> best first: 4, 2, 1, 0.
    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]], dtype=np.float32)
    assert vq_codes(x, k=4)[3].tolist() == [4, 2, 1, 0]
    # By L2 from item 3: distances 9, 4, 1, 0(self), 1 -> 2 and 4 tie at 1, lower index first.
    assert vq_codes(x, k=4, metric="l2")[3].tolist() == [2, 4, 1, 0]
    # Without self-exclusion under L2 the item is its own nearest neighbour.
    assert vq_codes(x, k=1, metric="l2", exclude_self=False)[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_identical_embeddings_of_other_items_are_kept() -> None:
    x = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    # Item 3's inner products with 0, 1, 2 are all 0: the tie goes to the lowest indices.
    np.testing.assert_array_equal(vq_codes(x, k=2), [[1, 2], [0, 2], [0, 1], [0, 1]])


@HYP
@given(n=st.integers(2, 60), d=st.integers(1, 6), k_frac=st.floats(0, 1), seed=st.integers(0, 2**16),
       ties=st.booleans(), metric=st.sampled_from(["ip", "l2"]), exclude_self=st.booleans())
def test_equals_brute_force_topk(n: int, d: int, k_frac: float, seed: int, ties: bool, metric: str,
                                 exclude_self: bool) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.integers(-1, 2, size=(n, d)) if ties else rng.normal(size=(n, d))).astype(np.float32)
    max_k = n - 1 if exclude_self else n
    k = 1 + int(k_frac * (max_k - 1))
    got = vq_codes(x, k, exclude_self=exclude_self, metric=metric)
    assert got.shape == (n, k) and got.dtype == np.int64
    np.testing.assert_array_equal(got, reference_topk(x, k, exclude_self=exclude_self, metric=metric))


def test_many_tied_items_force_wider_search() -> None:
    """60 identical items and k=3: faiss's candidates are an arbitrary subset of the tie; the lowest
    indices must still win, as in the reference."""
    rng = np.random.default_rng(1)
    x = np.concatenate([np.ones((60, 4)), rng.normal(size=(40, 4))]).astype(np.float32)
    np.testing.assert_array_equal(vq_codes(x, 3), reference_topk(x, 3))


def test_subset_of_rows_matches_all_rows() -> None:
    x = np.random.default_rng(2).normal(size=(50, 5)).astype(np.float32)
    rows = np.array([3, 17, 49])
    np.testing.assert_array_equal(topk_neighbours(x, 4, rows=rows), vq_codes(x, 4)[rows])


def test_too_few_items_raises() -> None:
    x = np.ones((3, 2), dtype=np.float32)
    with pytest.raises(QarmError, match="k=3 neighbours requested but only 2 exist"):
        vq_codes(x, 3)
    single = np.ones((1, 2), dtype=np.float32)
    with pytest.raises(QarmError, match="only 0 exist"):
        vq_codes(single, 1)
    assert vq_codes(single, 1, exclude_self=False).tolist() == [[0]]
    with pytest.raises(QarmError, match="metric"):
        vq_codes(x, 1, metric="cosine")  # type: ignore[arg-type]
