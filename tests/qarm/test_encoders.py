"""Encoders: text pooling/batching on a tiny random BERT, the real MiniLM weights (a few items, one
thread) against sentence-transformers, EfficientNet-Lite0 features, and the fusion item encoder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from qarm.encoders import (
    ImageEncoder,
    ItemEncoder,
    ItemFeatures,
    TextEncoder,
    default_text_model_path,
    item_features,
)
from qarm.encoders.text import mean_pool
from qarm.errors import QarmError

TEXTS = ["Toy Story (1995)", "", "a very long title " * 12, "Heat", "GoldenEye (1995) Action Adventure Thriller"]


def make_tiny_bert(path: Path) -> Path:
    """A 2-block random BERT (hidden 32) with MiniLM's tokenizer files: real code path, tiny weights."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(path)
    src = default_text_model_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / name, path / name)
    return path


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def test_text_encoder_shapes_norms_and_batching(tiny_bert: Path) -> None:
    enc = TextEncoder(tiny_bert, max_length=16, batch_size=2)
    out = enc.encode(TEXTS)
    assert out.shape == (len(TEXTS), 32) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # length-sorted batching must not change any row: compare with one text at a time
    one_by_one = np.concatenate([enc.encode([t]) for t in TEXTS])
    assert np.abs(out - one_by_one).max() < 1e-5
    assert enc.encode([]).shape == (0, 32)


def test_pooled_last_hidden_state_equals_encode(tiny_bert: Path) -> None:
    enc = TextEncoder(tiny_bert, max_length=16)
    states = enc.hidden_states(TEXTS[:3], layer=enc.num_layers)
    pooled = torch.stack([s.mean(0) for s in states])  # unpadded states: a plain mean is mean pooling
    pooled = pooled / pooled.norm(dim=1, keepdim=True)
    assert np.abs(pooled.numpy() - enc.encode(TEXTS[:3])).max() < 1e-5


def test_mean_pool_ignores_padding() -> None:
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert mean_pool(h, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]


def test_text_encoder_errors(tmp_path: Path) -> None:
    with pytest.raises(QarmError, match="cannot load"):
        TextEncoder(tmp_path / "nope")


def test_real_minilm_matches_sentence_transformers() -> None:
    """The packaged all-MiniLM-L6-v2 weights, a few items, one thread (conftest)."""
    from sentence_transformers import SentenceTransformer

    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply."]
    enc = TextEncoder()
    out = enc.encode(texts)
    assert out.shape == (3, 384)
    assert float(out[0] @ out[1]) > 0.5 > float(out[0] @ out[2])
    st_model = SentenceTransformer(str(default_text_model_path()), device="cpu")
    ref = st_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert np.abs(out - ref).max() < 1e-4


def _png(path: Path, colour: tuple[int, int, int], size: tuple[int, int]) -> str:
    from PIL import Image

    Image.new("RGB", size, colour).save(path)
    return str(path)


def test_efficientnet_lite0_features(tmp_path: Path) -> None:
    paths = [_png(tmp_path / "red.png", (220, 20, 20), (80, 60)), _png(tmp_path / "blue.png", (20, 20, 220), (50, 90))]
    enc = ImageEncoder(image_size=64)  # fully convolutional: a small input keeps the test fast
    out = enc.encode(paths)
    assert out.shape == (2, 1280) and enc.dim == 1280
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert float(out[0] @ out[1]) < 0.999  # different images, different features
    with pytest.raises(QarmError, match="cannot read"):
        enc.encode([str(tmp_path / "missing.png")])


def test_custom_vision_model_is_pooled(tmp_path: Path) -> None:
    conv = nn.Conv2d(3, 5, 3)
    enc = ImageEncoder(conv, image_size=16, normalize=False)
    out = enc.encode([_png(tmp_path / "x.png", (0, 255, 0), (16, 16))])
    # a uniform image in [-1, 1]: pixels (-1, 1, -1); the pooled conv output is bias + weight . pixels
    x = torch.tensor([-1.0, 1.0, -1.0])[:, None, None].expand(3, 3, 3)
    expected = conv.bias + (conv.weight * x).sum(dim=(1, 2, 3))
    assert np.allclose(out[0], expected.detach().numpy(), atol=1e-5)


def test_item_features_mark_missing_modalities(tiny_bert: Path, tmp_path: Path) -> None:
    img = _png(tmp_path / "a.png", (10, 200, 30), (32, 32))
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    feats = item_features(["Heat", "", "Toy Story"], [img, img, None], text_encoder=TextEncoder(tiny_bert),
                          image_encoder=ImageEncoder(conv, image_size=16))
    assert feats.present["text"].tolist() == [True, False, True]
    assert feats.present["image"].tolist() == [True, True, False]
    assert feats.dims == {"text": 32, "image": 4}
    assert np.all(feats.features["text"][1] == 0) and np.all(feats.features["image"][2] == 0)
    frozen = feats.frozen_embeddings()
    assert frozen.shape == (3, 36) and np.allclose(np.linalg.norm(frozen, axis=1), 1.0, atol=1e-5)


def test_item_encoder_uses_learned_missing_vector() -> None:
    torch.manual_seed(0)
    head = ItemEncoder({"text": 4, "image": 3}, d=8)
    text = torch.randn(3, 4)
    image = torch.randn(3, 3)
    present = {"text": torch.tensor([True, True, True]), "image": torch.tensor([True, False, False])}
    text[2] = text[1]
    out = head({"text": text, "image": image}, present)
    assert out.shape == (3, 8) and torch.allclose(out.norm(dim=1), torch.ones(3))
    # rows 1 and 2: same text, image missing -> identical embeddings whatever their image rows hold
    assert torch.allclose(out[1], out[2])
    out[1].sum().backward()
    assert head.missing["image"].grad is not None and head.missing["image"].grad.abs().sum() > 0
    assert head.missing["text"].grad is None or head.missing["text"].grad.abs().sum() == 0


def test_item_features_validation() -> None:
    with pytest.raises(QarmError, match="give texts"):
        item_features()
    with pytest.raises(QarmError, match="one N"):
        ItemFeatures({"text": np.zeros((3, 2), np.float32)}, {"text": np.ones(4, bool)})
