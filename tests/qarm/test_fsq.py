"""FSQ last level (QARM V2 Res-KmeansFSQ): digits and mixed radix by hand, fewer collisions than a degenerate
k-means last level at the same vocabulary, RQKmeans integration, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qarm.diagnostics import code_diagnostics
from qarm.errors import QarmConfigError, QarmError
from qarm.quantize import FSQ, QuantizeConfig, RQKmeans, load_quantizer
from qarm.quantize.fsq import mixed_radix, split_radix

# A 4 x 3 grid: x in {-3, -1, 1, 3}, y in {-1, 0, 1}. Mean 0, covariance diag(5, 2/3): the principal directions
# are +e1 then +e2 (largest entry made positive).
GRID = np.array([[x, y] for x in (-3, -1, 1, 3) for y in (-1, 0, 1)], dtype=np.float32)


def test_digits_and_mixed_radix_by_hand() -> None:
    fsq = FSQ((2, 3)).fit(GRID)
    np.testing.assert_allclose(fsq.directions, [[1.0, 0.0], [0.0, 1.0]], atol=1e-12)
    # dim 0, 2 bins: the median of the x values is 0. dim 1, 3 bins: the 1/3 and 2/3 quantiles of twelve values
    # (four each of -1, 0, 1; linear interpolation at positions 11/3 and 22/3) are -1/3 and 1/3.
    np.testing.assert_allclose(fsq.boundaries[0, :1], [0.0], atol=1e-12)
    np.testing.assert_allclose(fsq.boundaries[1], [-1 / 3, 1 / 3], atol=1e-12)
    digits = fsq.digits(GRID)
    expect = np.array([[int(x > 0), int(y) + 1] for x, y in GRID])
    np.testing.assert_array_equal(digits, expect)
    # code = digit_0 * 3 + digit_1 (dim 0 most significant): (3, 1) -> 1 * 3 + 2 = 5, (-3, -1) -> 0
    np.testing.assert_array_equal(fsq.encode(GRID), expect[:, 0] * 3 + expect[:, 1])
    assert fsq.vocab == 6
    # Bin centres are the mean projection of their items: x bins at -2 and 2, y bins at -1, 0, 1.
    np.testing.assert_allclose(fsq.decode(np.array([5, 0])), [[2.0, 1.0], [-2.0, -1.0]], atol=1e-6)
    # New points use the fitted boundaries.
    np.testing.assert_array_equal(fsq.encode(np.array([[0.5, -0.5], [-9.0, 9.0]], dtype=np.float32)), [3, 2])


@settings(max_examples=30, deadline=None)
@given(levels=st.lists(st.integers(2, 6), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_mixed_radix_round_trip(levels: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    digits = np.stack([rng.integers(0, lv, 20) for lv in levels], axis=1)
    code = mixed_radix(digits, levels)
    assert code.min() >= 0 and code.max() < np.prod(levels)
    np.testing.assert_array_equal(split_radix(code, levels), digits)


def test_encode_is_row_independent_and_equal_bins_hold_equal_counts() -> None:
    rng = np.random.default_rng(0)
    r = rng.normal(size=(999, 6)).astype(np.float32)
    fsq = FSQ((3, 3)).fit(r)
    full = fsq.encode(r)
    np.testing.assert_array_equal(np.concatenate([fsq.encode(r[:7]), fsq.encode(r[7:])]), full)
    # quantile bins: each digit splits the fitted items into (nearly) equal thirds
    for j in range(2):
        counts = np.bincount(fsq.digits(r)[:, j], minlength=3)
        assert counts.max() - counts.min() <= 2, counts


def _outlier_case(seed: int = 4) -> np.ndarray:
    """8 far-apart groups (level 1 separates them) of 4 items: 3 in a tight bulk, 1 far outlier. A k-means last
    level spends its centroids on the outliers and lumps each bulk into one code."""
    rng = np.random.default_rng(seed)
    groups = rng.normal(scale=1000, size=(8, 4))
    resid = rng.normal(scale=0.01, size=(32, 4))
    resid[::4] = rng.normal(scale=10, size=(8, 4))
    return (np.repeat(groups, 4, axis=0) + resid).astype(np.float32)


def test_fsq_last_level_cuts_collisions_at_equal_vocabulary() -> None:
    x = _outlier_case()
    plain = RQKmeans(levels=2, codebook_size=8, niter=20, seed=4).fit(x)
    fsq = RQKmeans(levels=2, codebook_size=8, niter=20, seed=4, last_level="fsq", fsq_levels=(2, 2, 2)).fit(x)
    assert plain.vocab_sizes == fsq.vocab_sizes == (8, 8)
    d_plain = code_diagnostics(x, plain.encode(x), codebook_size=list(plain.vocab_sizes))
    d_fsq = code_diagnostics(x, fsq.encode(x), codebook_size=list(fsq.vocab_sizes), decoder=fsq.decode)
    assert d_fsq.collision_rate < d_plain.collision_rate - 0.1, (d_fsq.collision_rate, d_plain.collision_rate)
    assert d_fsq.n_unique_codes > d_plain.n_unique_codes
    assert d_fsq.perplexity[1] > d_plain.perplexity[1]
    # Level 1 is the same k-means either way (same seed): FSQ only replaces the last level.
    np.testing.assert_array_equal(fsq.codebooks[0], plain.codebooks[0])


def test_rq_kmeans_with_fsq_encodes_decodes_and_round_trips(tmp_path) -> None:
    x = _outlier_case()
    rq = RQKmeans(levels=3, codebook_size=4, niter=10, seed=1, last_level="fsq", fsq_levels=(3, 2)).fit(x)
    codes = rq.encode(x)
    assert codes.shape == (32, 3) and codes.dtype == np.int64
    assert rq.codebooks.shape == (2, 4, 4) and rq.vocab_sizes == (4, 4, 6)
    assert codes[:, 2].max() < 6 and rq.fit_stats_[-1]["level"] == 3 and "fsq_seconds" in rq.fit_stats_[-1]
    # Decoding the FSQ level never reconstructs worse than the k-means prefix alone (its bins' means).
    err2 = np.mean((x - rq.decode(codes[:, :2])) ** 2)
    err3 = np.mean((x - rq.decode(codes)) ** 2)
    assert err3 <= err2 * (1 + 1e-6)
    rq.save(tmp_path / "q")
    meta = json.loads((tmp_path / "q" / "rq_kmeans.json").read_text())
    assert meta["last_level"] == "fsq" and meta["fsq_levels"] == [3, 2]
    back = load_quantizer(tmp_path / "q")
    np.testing.assert_array_equal(back.encode(x), codes)
    np.testing.assert_allclose(back.decode(codes), rq.decode(codes))


def test_fsq_as_the_only_level() -> None:
    rq = RQKmeans(levels=1, codebook_size=64, last_level="fsq", fsq_levels=(2, 3)).fit(GRID)
    assert rq.codebooks.shape == (0, 64, 2)
    np.testing.assert_array_equal(rq.encode(GRID)[:, 0], FSQ((2, 3)).fit(GRID).encode(GRID))


def test_bad_fsq_settings_raise() -> None:
    with pytest.raises(QarmError, match="fsq_levels"):
        RQKmeans(last_level="fsq", fsq_levels=(1, 4))
    with pytest.raises(QarmError, match="last_level"):
        RQKmeans(last_level="dedup")
    with pytest.raises(QarmError, match="only d=2"):
        FSQ((2, 2, 2)).fit(GRID)
    with pytest.raises(QarmError, match="not fitted"):
        FSQ((2,)).encode(GRID)
    with pytest.raises(QarmError, match=r"\[0, 6\)"):
        FSQ((2, 3)).fit(GRID).decode(np.array([6]))
    with pytest.raises(QarmConfigError, match="fsq_levels"):
        QuantizeConfig(fsq_levels=(4, 1))
    with pytest.raises(QarmConfigError, match="last_level"):
        QuantizeConfig(last_level="dedup")  # type: ignore[arg-type]
    assert QuantizeConfig(last_level="fsq", fsq_levels=(8, 8)).level_vocab == (64, 64, 64)
    assert QuantizeConfig(dedup=True).level_vocab == (64, 64, 64)
