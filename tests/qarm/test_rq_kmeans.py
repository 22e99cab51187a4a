"""RQ-Kmeans: relational properties (faiss-style), the numpy reference, edge shapes, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qarm.errors import QarmError
from qarm.quantize import RQKmeans, faiss_utils, gemm_encode, load_quantizer, rq_decode, rq_encode
from qarm.quantize.gemm_encode import gemm_rq_encode
from qarm.quantize.reference import reference_residuals, reference_rq_encode
from qarm.quantize.rq_kmeans import faiss_rq_encode

HYP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _data(n: int, d: int, seed: int, ties: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if ties:  # small integers: duplicate points and exactly tied distances
        return rng.integers(-2, 3, size=(n, d)).astype(np.float32)
    return rng.normal(size=(n, d)).astype(np.float32)


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 8)) * 3
    return (centres[rng.integers(0, 20, 600)] + rng.normal(size=(600, 8))).astype(np.float32)


def test_reconstruction_error_never_rises_with_more_levels(blobs: np.ndarray) -> None:
    rq = RQKmeans(levels=4, codebook_size=16, niter=10, seed=3).fit(blobs)
    mse = [float(np.mean(blobs.astype(np.float64) ** 2))] + [s["residual_mse"] for s in rq.fit_stats_[:-1]]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(mse, mse[1:])), mse
    assert "residual_mse" not in rq.fit_stats_[-1]
    codes = rq.encode(blobs)
    # Decoding a longer prefix never reconstructs worse either.
    errs = [np.mean((blobs - rq.decode(codes[:, :lv])) ** 2) for lv in range(1, 5)]
    assert all(b <= a * (1 + 1e-5) for a, b in zip(errs, errs[1:])), errs


def test_fewer_levels_are_a_prefix_of_more_levels(blobs: np.ndarray) -> None:
    """Levels are fitted greedily with seed + level, so L=2 is the first two levels of L=3."""
    two = RQKmeans(levels=2, codebook_size=8, niter=5, seed=1).fit(blobs)
    three = RQKmeans(levels=3, codebook_size=8, niter=5, seed=1).fit(blobs)
    np.testing.assert_array_equal(two.codebooks, three.codebooks[:2])


def test_same_seed_identical_codebooks_other_seed_differs(blobs: np.ndarray) -> None:
    a = RQKmeans(levels=2, codebook_size=8, niter=5, seed=7).fit(blobs)
    b = RQKmeans(levels=2, codebook_size=8, niter=5, seed=7).fit(blobs)
    c = RQKmeans(levels=2, codebook_size=8, niter=5, seed=8).fit(blobs)
    np.testing.assert_array_equal(a.codebooks, b.codebooks)
    assert not np.array_equal(a.codebooks, c.codebooks)
    assert a.codebooks.shape == (2, 8, 8) and a.codebooks.dtype == np.float32


def test_subsampled_kmeans_is_seeded_too(blobs: np.ndarray) -> None:
    a = RQKmeans(levels=2, codebook_size=8, niter=5, seed=2, max_points_per_centroid=10).fit(blobs)
    b = RQKmeans(levels=2, codebook_size=8, niter=5, seed=2, max_points_per_centroid=10).fit(blobs)
    np.testing.assert_array_equal(a.codebooks, b.codebooks)


@HYP
@given(n=st.integers(1, 30), d=st.integers(1, 6), k_frac=st.floats(0, 1), levels=st.integers(1, 3),
       seed=st.integers(0, 2**16), ties=st.booleans())
def test_faiss_path_equals_numpy_reference(n: int, d: int, k_frac: float, levels: int, seed: int,
                                           ties: bool) -> None:
    x = _data(n, d, seed, ties)
    k = 1 + int(k_frac * (n - 1))  # 1 <= K <= N, K = 1 and N = 1 included
    rq = RQKmeans(levels=levels, codebook_size=k, niter=3, seed=seed).fit(x)
    codes = rq.encode(x)
    np.testing.assert_array_equal(codes, reference_rq_encode(x, rq.codebooks))
    assert codes.shape == (n, levels) and codes.dtype == np.int64
    ref_last = reference_residuals(x, rq.codebooks, codes)[-1]
    np.testing.assert_allclose(x - rq.decode(codes), ref_last, atol=1e-4)


@HYP
@given(n=st.integers(1, 40), d=st.integers(1, 5), k=st.integers(1, 40), levels=st.integers(1, 3),
       seed=st.integers(0, 2**16), n_distinct=st.integers(1, 4))
def test_encode_ties_and_wide_codebooks_match_reference(n: int, d: int, k: int, levels: int, seed: int,
                                                        n_distinct: int) -> None:
    """Arbitrary codebooks with many duplicated centroids: exact ties, and K > 8 forces the rescoring path."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
    distinct = rng.integers(-2, 3, size=(levels, n_distinct, d)).astype(np.float32)
    books = distinct[:, rng.integers(0, n_distinct, size=k)]
    np.testing.assert_array_equal(rq_encode(x, books), reference_rq_encode(x, books))


def test_near_ties_in_float32_are_decided_exactly() -> None:
    """Two centroids closer together than faiss's rounding: the certified path must still agree."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 32)).astype(np.float32)
    books = np.concatenate([base + rng.normal(size=(1, 32)).astype(np.float32) * 1e-6 for _ in range(12)])
    x = (base + rng.normal(size=(200, 32)).astype(np.float32) * 1e-3).astype(np.float32)
    np.testing.assert_array_equal(rq_encode(x, books[None]), reference_rq_encode(x, books[None]))


def test_codebook_larger_than_items_raises_naming_it() -> None:
    x = np.eye(3, dtype=np.float32)
    with pytest.raises(QarmError, match="codebook_size=4 exceeds the number of items N=3"):
        RQKmeans(levels=1, codebook_size=4).fit(x)


def test_codebook_larger_than_distinct_points_is_handled() -> None:
    """N >= K but only 2 distinct points: faiss splits empty clusters; codes stay valid, error drops to ~0."""
    x = np.repeat(np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32), 5, axis=0)
    rq = RQKmeans(levels=2, codebook_size=4, niter=5, seed=0).fit(x)
    codes = rq.encode(x)
    assert codes.min() >= 0 and codes.max() < 4
    assert np.mean((x - rq.decode(codes)) ** 2) < 1e-4


def test_bad_inputs_raise_typed_errors() -> None:
    with pytest.raises(QarmError, match="levels"):
        RQKmeans(levels=0)
    x = np.ones((4, 2), dtype=np.float32)
    x[2, 1] = np.nan
    with pytest.raises(QarmError, match="row 2"):
        RQKmeans(levels=1, codebook_size=2).fit(x)
    with pytest.raises(QarmError, match=r"\(N, d\)"):
        RQKmeans(levels=1, codebook_size=1).fit(np.ones(4, dtype=np.float32))
    with pytest.raises(QarmError, match="not fitted"):
        RQKmeans().encode(np.ones((2, 2), dtype=np.float32))
    books = np.zeros((2, 3, 2), dtype=np.float32)
    with pytest.raises(QarmError, match=r"\[0, K=3\)"):
        rq_decode(np.array([[0, 3]]), books)


@pytest.mark.skipif(faiss_utils.num_gpus() > 0, reason="a GPU is present")
def test_gpu_true_without_gpu_raises() -> None:
    with pytest.raises(QarmError, match="no GPU"):
        RQKmeans(gpu=True)


def test_save_load_round_trip_without_pickle(blobs: np.ndarray, tmp_path) -> None:
    rq = RQKmeans(levels=2, codebook_size=8, niter=5, seed=0).fit(blobs)
    rq.save(tmp_path / "rq")
    assert sorted(p.name for p in (tmp_path / "rq").iterdir()) == ["rq_kmeans.json", "rq_kmeans.safetensors"]
    assert json.loads((tmp_path / "rq" / "rq_kmeans.json").read_text())["levels"] == 2
    back = load_quantizer(tmp_path / "rq")
    assert isinstance(back, RQKmeans)
    np.testing.assert_array_equal(back.codebooks, rq.codebooks)
    np.testing.assert_array_equal(back.encode(blobs), rq.encode(blobs))
    with pytest.raises(QarmError, match="missing"):
        RQKmeans.load(tmp_path / "nowhere")


def _near_tie_books(rng: np.random.Generator, levels: int, k: int, d: int, spread: float) -> np.ndarray:
    """(L, K, d) codebooks of a few base points each copied with `spread`-sized perturbations (0: exact ties)."""
    base = rng.normal(size=(levels, max(1, k // 3), d)).astype(np.float32)
    books = base[:, rng.integers(0, base.shape[1], size=k)]
    return (books + rng.normal(size=books.shape).astype(np.float32) * spread).astype(np.float32)


@HYP
@given(n=st.integers(1, 300), d=st.integers(1, 40), k=st.integers(1, 70), levels=st.integers(1, 3),
       seed=st.integers(0, 2**16), spread=st.sampled_from([0.0, 1e-7, 1e-6, 1e-3, 1.0]),
       block_rows=st.integers(1, 64), threads=st.integers(1, 3))
def test_gemm_encoder_equals_reference_on_ties_and_near_ties(n: int, d: int, k: int, levels: int, seed: int,
                                                             spread: float, block_rows: int, threads: int) -> None:
    """The blocked-GEMM encoder vs the one-item-at-a-time float64 reference: duplicated centroids (spread 0),
    centroids closer than float32 rounding, and points near the centroids; small blocks and several threads
    so block tails and the worker pool run."""
    rng = np.random.default_rng(seed)
    books = _near_tie_books(rng, levels, k, d, spread)
    x = (books[0][rng.integers(0, k, size=n)] + rng.normal(size=(n, d)).astype(np.float32) * 1e-3)
    x = x.astype(np.float32)
    codes = gemm_rq_encode(x, books, threads=threads, block_rows=block_rows)
    np.testing.assert_array_equal(codes, reference_rq_encode(x, books))


def test_gemm_encoder_needs_its_certificate() -> None:
    """With the error bound set to zero the float32 GEMM alone picks other centroids than the exact rule on
    near ties: the exactness tests above can fail, and the certification is what makes the encoder exact."""
    rng = np.random.default_rng(0)
    books = _near_tie_books(rng, 1, 12, 32, 1e-6)
    x = (books[0][rng.integers(0, 12, size=2000)] + rng.normal(size=(2000, 32)) * 1e-3).astype(np.float32)
    exact = reference_rq_encode(x, books)
    np.testing.assert_array_equal(gemm_rq_encode(x, books), exact)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gemm_encode, "_EPS32", 0.0)
        assert not np.array_equal(gemm_rq_encode(x, books), exact)


def test_gemm_encoder_gives_the_faiss_encoders_codes_on_a_seeded_suite_case() -> None:
    """20k x 64 aligned-like embeddings, L=3, K=256: the GEMM encoder (CPU default) and the certified faiss
    encoder (the previous CPU default, now the GPU path) give identical codes."""
    from benchmark.perf.quantize import synthetic_embeddings

    x = synthetic_embeddings(20_000, 64, 512, seed=0)
    rq = RQKmeans(levels=3, codebook_size=256, niter=5, seed=0, gpu=False).fit(x)
    codes = rq.encode(x)
    np.testing.assert_array_equal(codes, faiss_rq_encode(x, rq.codebooks))
    np.testing.assert_array_equal(codes, gemm_rq_encode(x, rq.codebooks, threads=2, block_rows=1000))
    np.testing.assert_array_equal(codes[:500], reference_rq_encode(x[:500], rq.codebooks))
