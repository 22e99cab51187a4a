"""Tiny randomly initialised Hugging Face models saved to temporary folders (no downloads): one per family the
encoders claim. Real code paths (AutoModel / AutoImageProcessor / AutoTokenizer from a directory), tiny weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

VISION_FAMILIES = ("vit", "clip", "clip_vision", "resnet", "convnext")


def save_tiny_bert(path: Path, layers: int = 2) -> Path:
    """A random BERT (hidden 32) with MiniLM's tokenizer files."""
    from transformers import BertConfig, BertModel

    from qarm.encoders import default_text_model_path

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(default_text_model_path() / name, path / name)
    return path


def save_tiny_vision(path: Path, family: str) -> Path:
    """A random vision model of `family` (32 px inputs, 2 blocks) and its image processor, in `path`."""
    import transformers as T

    torch.manual_seed(0)
    vit_like = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                    patch_size=8)
    mean, std = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
    if family == "vit":
        T.ViTModel(T.ViTConfig(**vit_like)).save_pretrained(path)
        proc = T.ViTImageProcessorPil(size={"height": 32, "width": 32}, image_mean=mean, image_std=std)
    elif family in ("clip", "clip_vision"):
        if family == "clip":  # a full CLIP checkpoint: only its vision tower is used
            text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        vocab_size=100, bos_token_id=0, eos_token_id=1, pad_token_id=1)
            T.CLIPModel(T.CLIPConfig(text_config=text, vision_config=vit_like, projection_dim=16)).save_pretrained(path)
        else:
            T.CLIPVisionModel(T.CLIPVisionConfig(**vit_like)).save_pretrained(path)
        proc = T.CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    elif family == "resnet":
        T.ResNetModel(T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
                      ).save_pretrained(path)
        proc = T.ConvNextImageProcessorPil(size={"shortest_edge": 32})
    elif family == "convnext":
        T.ConvNextModel(T.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)).save_pretrained(path)
        proc = T.ConvNextImageProcessorPil(size={"shortest_edge": 32})
    else:
        raise ValueError(family)
    proc.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """family -> directory, for every vision family and "bert"."""
    from qarm.encoders.local import quiet_transformers

    root = tmp_path_factory.mktemp("tiny_hf")
    with quiet_transformers():
        out = {f: save_tiny_vision(root / f, f) for f in VISION_FAMILIES}
        out["bert"] = save_tiny_bert(root / "bert")
    return out


@pytest.fixture(scope="session")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Eight small PNGs: greyscale 28x28 (like Fashion-MNIST) and colour of other sizes."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):
        shape = (28, 28) if i % 2 == 0 else (20 + 3 * i, 30, 3)
        arr = rng.integers(0, 256, shape, dtype=np.uint8)
        p = root / f"{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(str(p))
    return paths
