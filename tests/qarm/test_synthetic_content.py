"""Synthetic content vectors (qarm.encoders.synthetic): deterministic, unit-norm, and informative about the
category exactly as the formula says (same-category cosine ~ 1 / (1 + noise^2), cross-category ~ 0)."""

from __future__ import annotations

import numpy as np
import pytest

from qarm.encoders.config import EncoderConfig, SyntheticContentConfig
from qarm.encoders.synthetic import MODALITY, category_labels, synthetic_item_features, synthetic_vectors
from qarm.errors import QarmError


def test_category_labels_are_sorted_name_codes() -> None:
    assert category_labels(["cluster-2", "cluster-10", None, "cluster-2"]).tolist() == [2, 1, 0, 2]
    assert category_labels([]).shape == (0,)


def test_vectors_are_deterministic_and_unit_norm() -> None:
    labels = np.repeat(np.arange(4), 5)
    cfg = SyntheticContentConfig(dim=16, noise=0.5, seed=3)
    a, b = synthetic_vectors(labels, cfg), synthetic_vectors(labels, cfg)
    assert a.dtype == np.float32 and a.shape == (20, 16) and np.array_equal(a, b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert not np.array_equal(a, synthetic_vectors(labels, SyntheticContentConfig(dim=16, noise=0.5, seed=4)))
    # noise 0: every item is its category's centroid
    exact = synthetic_vectors(labels, SyntheticContentConfig(dim=16, noise=0.0, seed=3))
    assert np.allclose(exact[0], exact[4]) and not np.allclose(exact[0], exact[5])


@pytest.mark.parametrize("noise", [0.5, 1.0])
def test_vectors_are_cluster_informative(noise: float) -> None:
    """Mean cosine within a category ~ 1 / (1 + noise^2) (centroid norm 1, noise norm ~ noise), across ~ 0;
    and the nearest other item shares the category far above chance (1/8)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, 800)
    x = synthetic_vectors(labels, SyntheticContentConfig(dim=64, noise=noise, seed=0))
    sim = x @ x.T
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    assert sim[same & off].mean() == pytest.approx(1 / (1 + noise**2), abs=0.05)
    assert abs(sim[~same].mean()) < 0.05
    np.fill_diagonal(sim, -np.inf)
    assert (labels[sim.argmax(1)] == labels).mean() > 0.9


def test_item_features_and_config_checks() -> None:
    feats = synthetic_item_features(["cluster-0", "cluster-1", "cluster-0"], SyntheticContentConfig(dim=8))
    assert feats.dims == {MODALITY: 8} and feats.present[MODALITY].all()
    assert feats.frozen_embeddings().shape == (3, 8)
    with pytest.raises(QarmError, match=r"SyntheticContentConfig.dim: expected an integer >= 1"):
        SyntheticContentConfig(dim=0)
    with pytest.raises(QarmError, match=r"SyntheticContentConfig.noise: expected a number >= 0"):
        SyntheticContentConfig(noise=-1.0)
    with pytest.raises(QarmError, match=r"EncoderConfig.kind: expected 'model' or 'synthetic'"):
        EncoderConfig(kind="bogus")  # type: ignore[arg-type]
    with pytest.raises(QarmError, match="labels must be"):
        synthetic_vectors(np.array([[0, 1]]), SyntheticContentConfig())
