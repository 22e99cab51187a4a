"""Balanced k-means (OneRec): exact sizes, the stable-matching rule against its slow reference, better usage than
plain k-means on a skewed set, and RQKmeans(balanced=True) keeping fitted codes through encode / save / load."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qarm.diagnostics import code_diagnostics
from qarm.errors import QarmError
from qarm.quantize import RQKmeans, balanced_assign, balanced_kmeans, load_quantizer
from qarm.quantize.balanced import balanced_capacities, pair_distances, reference_balanced_assign
from qarm.quantize.reference import reference_rq_encode

HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_capacities_exact_when_divisible_else_within_one() -> None:
    np.testing.assert_array_equal(balanced_capacities(12, 4), [3, 3, 3, 3])
    np.testing.assert_array_equal(balanced_capacities(14, 4), [4, 4, 3, 3])
    np.testing.assert_array_equal(balanced_capacities(5, 5), [1] * 5)
    with pytest.raises(QarmError, match="K <= N"):
        balanced_capacities(3, 4)


def test_hand_example() -> None:
    """Points 0, 1, 2 at 0, 1, 10 on a line; centroids at 0 and 10, capacities (2, 1) then (1, 2).
    Greedy by distance: (0, c0)=0, (2, c1)=0, (1, c0)=1 -> labels 0, 0, 1. With c0 holding one point, point 1
    goes on to c1 (distance 81)."""
    x = np.array([[0.0], [1.0], [10.0]], dtype=np.float32)
    c = np.array([[0.0], [10.0]], dtype=np.float32)
    np.testing.assert_array_equal(balanced_assign(x, c, np.array([2, 1])), [0, 0, 1])
    np.testing.assert_array_equal(balanced_assign(x, c, np.array([1, 2])), [0, 1, 1])


@HYP
@given(n=st.integers(1, 40), k_frac=st.floats(0, 1), d=st.integers(1, 4), seed=st.integers(0, 2**16),
       cand=st.integers(1, 6))
def test_fast_path_equals_reference_with_few_candidates(n: int, k_frac: float, d: int, seed: int, cand: int) -> None:
    """Continuous data (no float ties): the deferred-acceptance path past its m candidates equals the greedy."""
    rng = np.random.default_rng(seed)
    k = 1 + int(k_frac * (n - 1))
    x = rng.normal(size=(n, d)).astype(np.float32)
    c = rng.normal(size=(k, d)).astype(np.float32)
    cap = balanced_capacities(n, k)
    got = balanced_assign(x, c, cap, candidates=cand)
    np.testing.assert_array_equal(got, reference_balanced_assign(pair_distances(x, c), cap))
    np.testing.assert_array_equal(np.bincount(got, minlength=k), cap)


@HYP
@given(n=st.integers(1, 40), k_frac=st.floats(0, 1), d=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_ties_follow_the_pair_order(n: int, k_frac: float, d: int, seed: int) -> None:
    """Small integers: many equal distances, decided by (point, centroid) index exactly as the reference."""
    rng = np.random.default_rng(seed)
    k = 1 + int(k_frac * (n - 1))
    x = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
    c = rng.integers(-2, 3, size=(k, d)).astype(np.float32)
    cap = balanced_capacities(n, k)
    got = balanced_assign(x, c, cap, candidates=k)
    np.testing.assert_array_equal(got, reference_balanced_assign(pair_distances(x, c), cap))


def test_assignment_is_stable() -> None:
    """No blocking pair: a point p nearer to centroid c than to its own never finds c holding a farther point."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    c = rng.normal(size=(7, 5)).astype(np.float32)
    labels = balanced_assign(x, c, candidates=2)
    dist = pair_distances(x, c)
    own = dist[np.arange(300), labels]
    worst = np.array([dist[labels == j, j].max() for j in range(7)])
    for p in range(300):
        better = dist[p] < own[p]
        assert not (better & (worst > dist[p])).any(), p


def _skewed(n: int = 240, seed: int = 0) -> np.ndarray:
    """90% of the points in one tight blob, 10% spread far out: plain k-means gives the blob few centroids."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=0.1, size=(n, 4))
    far = rng.choice(n, n // 10, replace=False)
    x[far] = rng.normal(scale=20.0, size=(far.size, 4))
    return x.astype(np.float32)


def test_balanced_kmeans_sizes_and_better_usage_than_plain() -> None:
    x = _skewed()
    bk = balanced_kmeans(x, 16, niter=20, seed=0, iters=5, max_points_per_centroid=None, use_gpu=False)
    np.testing.assert_array_equal(np.bincount(bk.labels, minlength=16), [15] * 16)
    np.testing.assert_array_equal(balanced_assign(x, bk.centroids), bk.labels)  # labels agree with centroids
    plain = RQKmeans(levels=1, codebook_size=16, niter=20, seed=0).fit(x)
    bal = RQKmeans(levels=1, codebook_size=16, niter=20, seed=0, balanced=True, balanced_iters=5).fit(x)
    d_plain = code_diagnostics(x, plain.encode(x), codebook_size=16)
    d_bal = code_diagnostics(x, bal.encode(x), codebook_size=16)
    assert d_bal.perplexity[0] == pytest.approx(16.0)  # 16 equal clusters: the maximum
    assert d_bal.perplexity[0] > d_plain.perplexity[0] + 2.0, (d_bal.perplexity, d_plain.perplexity)
    assert d_bal.utilisation[0] == 1.0 >= d_plain.utilisation[0]
    assert d_bal.max_items_per_code < d_plain.max_items_per_code


def test_sizes_differ_by_at_most_one_when_not_divisible() -> None:
    x = _skewed(n=250)
    bk = balanced_kmeans(x, 16, niter=5, seed=1, iters=2, max_points_per_centroid=None, use_gpu=False)
    counts = np.bincount(bk.labels, minlength=16)
    assert counts.sum() == 250 and counts.max() - counts.min() == 1


def test_balanced_rq_kmeans_every_level_balanced_and_encode_returns_fitted_codes(tmp_path) -> None:
    x = _skewed(n=256, seed=2)
    rq = RQKmeans(levels=3, codebook_size=8, niter=10, seed=0, balanced=True, balanced_iters=3).fit(x)
    codes = rq.encode(x)
    for level in range(3):  # each level balances all N residuals
        np.testing.assert_array_equal(np.bincount(codes[:, level], minlength=8), [32] * 8)
    np.testing.assert_array_equal(codes, rq.fitted.codes)
    # Fitted rows in another order, or some of them, keep their fitted codes.
    perm = np.random.default_rng(0).permutation(256)
    np.testing.assert_array_equal(rq.encode(x[perm]), codes[perm])
    np.testing.assert_array_equal(rq.encode(x[:5]), codes[:5])
    # A new item gets the nearest centroid per level, capacities ignored (the plain residual rule).
    new = x[:3] + np.float32(0.013)
    np.testing.assert_array_equal(rq.encode(new), reference_rq_encode(new, rq.codebooks))
    assert [s["balanced_rounds"] for s in rq.fit_stats_] and all(s["imbalance_factor"] == 1.0 for s in rq.fit_stats_)
    rq.save(tmp_path / "b")
    back = load_quantizer(tmp_path / "b")
    assert back.balanced and back.fitted is not None
    np.testing.assert_array_equal(back.encode(x), codes)
    np.testing.assert_array_equal(back.encode(new), rq.encode(new))


def test_balanced_with_fsq_last_level() -> None:
    x = _skewed(n=128, seed=5)
    rq = RQKmeans(levels=2, codebook_size=8, niter=5, seed=0, balanced=True, balanced_iters=2, last_level="fsq",
                  fsq_levels=(2, 4)).fit(x)
    codes = rq.encode(x)
    np.testing.assert_array_equal(np.bincount(codes[:, 0], minlength=8), [16] * 8)
    np.testing.assert_array_equal(codes, rq.fitted.codes)
    assert rq.vocab_sizes == (8, 8) and codes[:, 1].max() < 8


def test_duplicate_fit_rows_keep_their_own_balanced_codes() -> None:
    """Identical embeddings may sit in different balanced clusters; encoding the fit matrix keeps both codes."""
    x = np.repeat(np.eye(2, dtype=np.float32), 4, axis=0)  # two points, each 4 times
    rq = RQKmeans(levels=1, codebook_size=4, niter=5, seed=0, balanced=True, balanced_iters=1).fit(x)
    codes = rq.encode(x)
    np.testing.assert_array_equal(np.bincount(codes[:, 0], minlength=4), [2, 2, 2, 2])
    np.testing.assert_array_equal(codes, rq.fitted.codes)
