"""RQ-VAE (TIGER baseline): training lowers the loss on toy data; seeded; save/load; shapes and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qarm.errors import QarmError
from qarm.quantize import RQVAE, Quantizer, RQVAEConfig, fit_rq_vae, load_quantizer

L, K = 2, 8
CFG = RQVAEConfig(hidden=(32,), latent_dim=4, epochs=30, batch_size=32, lr=1e-2)


@pytest.fixture(scope="module")
def toy() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 6)) * 2
    return (centres[rng.integers(0, 8, 256)] + 0.1 * rng.normal(size=(256, 6))).astype(np.float32)


@pytest.fixture(scope="module")
def model(toy: np.ndarray) -> RQVAE:
    return fit_rq_vae(toy, L, K, CFG, seed=0)


def test_loss_falls_on_toy_data(model: RQVAE) -> None:
    losses = [h["loss"] for h in model.history]
    assert len(losses) == CFG.epochs
    assert losses[-1] < 0.5 * losses[0], losses
    assert model.history[-1]["recon_loss"] < model.history[0]["recon_loss"]


def test_codes_and_reconstruction_shapes(model: RQVAE, toy: np.ndarray) -> None:
    codes = model.encode(toy)
    assert codes.shape == (256, 2) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 8
    x_hat = model.decode(codes)
    assert x_hat.shape == toy.shape and x_hat.dtype == np.float32
    # Learned codes explain most of the variance of 8 well-separated clusters.
    assert np.mean((toy - x_hat) ** 2) < 0.5 * np.mean((toy - toy.mean(0)) ** 2)
    assert isinstance(model, Quantizer)


def test_encode_matches_forward_pass(model: RQVAE, toy: np.ndarray) -> None:
    with torch.no_grad():
        out = model(torch.from_numpy(toy))
    np.testing.assert_array_equal(model.encode(toy), out.codes.numpy())


def test_straight_through_reaches_the_encoder(toy: np.ndarray) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = RQVAE(6, L, K, CFG)
    out = m(torch.from_numpy(toy[:32]))
    out.recon_loss.backward()
    assert m.encoder[0].weight.grad is not None and m.encoder[0].weight.grad.abs().sum() > 0


def test_same_seed_same_model_and_global_rng_untouched(toy: np.ndarray) -> None:
    cfg = RQVAEConfig(hidden=(8,), latent_dim=2, epochs=2, batch_size=64)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = fit_rq_vae(toy, 1, 4, cfg, seed=5), fit_rq_vae(toy, 1, 4, cfg, seed=5)
    assert torch.rand(1) == before
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_save_load_round_trip(model: RQVAE, toy: np.ndarray, tmp_path) -> None:
    model.save(tmp_path / "vae")
    back = load_quantizer(tmp_path / "vae")
    assert isinstance(back, RQVAE) and back.cfg == CFG and back.history == model.history
    np.testing.assert_array_equal(back.encode(toy), model.encode(toy))
    np.testing.assert_array_equal(back.decode(model.encode(toy)), model.decode(model.encode(toy)))


def test_bad_settings_raise(toy: np.ndarray) -> None:
    with pytest.raises(QarmError, match="batch_size"):
        fit_rq_vae(toy, 3, 128, RQVAEConfig(batch_size=32, hidden=(8,), latent_dim=2, epochs=1))
    with pytest.raises(QarmError, match="RQVAEConfig.latent_dim: expected an integer >= 1"):
        RQVAEConfig(latent_dim=0)
    with pytest.raises(QarmError, match="RQVAE: input_dim, levels and codebook_size must be >= 1"):
        fit_rq_vae(toy, 0, 8)
    with pytest.raises(QarmError, match=r"\[0, K=8\)"):
        fit_rq_vae(toy[:64], 1, 8, RQVAEConfig(hidden=(8,), latent_dim=2, epochs=1, batch_size=64)).decode(
            np.array([[8]]))
