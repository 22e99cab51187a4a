"""Image encoders over local Hugging Face vision models: every claimed family (ViT, CLIP full and vision-only,
ResNet, ConvNeXt) loads from a directory with its processor, pools by its stated rule, and splits into
stem / blocks / head exactly as its own forward computes; hub ids without a local copy fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from qarm.encoders import ImageEncoder, TextEncoder
from qarm.errors import QarmError

VISION_FAMILIES = ("vit", "clip", "clip_vision", "resnet", "convnext")  # as in conftest.py


def _reference(enc: ImageEncoder, family: str, x: torch.Tensor) -> torch.Tensor:
    """The family's pooling rule written against the HF model's own outputs (qarm.encoders.vision docstring)."""
    out = enc.backbone.model(pixel_values=x)
    if family == "vit":
        return out.last_hidden_state[:, 0]  # CLS of the final layer-normed sequence (not the tanh pooler)
    if family == "resnet":
        return out.pooler_output.flatten(1)
    return out.pooler_output  # CLIP: post-layernormed CLS; ConvNeXt: layernorm of the spatial mean


@pytest.mark.parametrize("family", VISION_FAMILIES)
def test_family_loads_pools_and_splits(family: str, tiny_models: dict[str, Path], image_files: list[str]) -> None:
    enc = ImageEncoder(tiny_models[family], batch_size=3, normalize=False)
    assert enc.family == {"clip_vision": "clip"}.get(family, family)
    assert enc.num_blocks == 2
    out = enc.encode(image_files)
    assert out.shape == (len(image_files), enc.dim) and out.dtype == np.float32
    with torch.no_grad():
        x = enc.preprocess(image_files)
        assert x.shape[:2] == (len(image_files), 3)
        ref = _reference(enc, family, x)
        assert np.abs(out - ref.numpy()).max() < 1e-4
        for first in range(enc.num_blocks + 1):  # the split the alignment tower caches equals the forward
            split = enc.backbone.upper(enc.block_inputs(image_files, first), first)
            assert torch.allclose(split, ref, atol=1e-4), first
    normed = ImageEncoder(tiny_models[family]).encode(image_files[:2])
    assert np.allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-5)


def test_clip_checkpoint_uses_its_vision_tower(tiny_models: dict[str, Path], image_files: list[str]) -> None:
    from transformers import CLIPModel

    enc = ImageEncoder(tiny_models["clip"], normalize=False)
    full = CLIPModel.from_pretrained(tiny_models["clip"])
    with torch.no_grad():
        ref = full.vision_model(pixel_values=enc.preprocess(image_files[:3])).pooler_output
    assert np.abs(enc.encode(image_files[:3]) - ref.numpy()).max() < 1e-5


def test_hub_ids_without_a_local_copy_fail_clearly(tmp_path: Path) -> None:
    for make in (ImageEncoder, TextEncoder):
        with pytest.raises(QarmError, match=r"'nobody/no-such-model'.*no local copy.*pass a local model directory"):
            make("nobody/no-such-model")


def test_wrong_directories_fail_clearly(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(QarmError, match="not a vision model"):
        ImageEncoder(tiny_models["bert"])
    with pytest.raises(QarmError, match="not a text model"):
        TextEncoder(tiny_models["vit"])
    bare = tmp_path / "bare"
    import shutil

    shutil.copytree(tiny_models["vit"], bare)
    (bare / "preprocessor_config.json").unlink()
    with pytest.raises(QarmError, match="preprocessor_config.json"):
        ImageEncoder(bare)


def test_lite0_splits_into_its_mbconv_blocks(image_files: list[str]) -> None:
    enc = ImageEncoder(image_size=32, normalize=False)
    assert enc.family == "efficientnet-lite0" and enc.num_blocks == 16
    with torch.no_grad():
        ref = torch.from_numpy(enc.encode(image_files[:2]))
        for first in (0, 15, 16):
            assert torch.allclose(enc.backbone.upper(enc.block_inputs(image_files[:2], first), first), ref, atol=1e-4)
