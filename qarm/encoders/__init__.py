"""Item content encoders: text (any local HF text model, MiniLM by default), image (EfficientNet-Lite0 by
default, or any local HF vision model) and the late-fusion item encoder (concatenation or gated sum) with
learned missing-modality vectors.

The config imports no torch; encoders and models load on first use."""

from __future__ import annotations

import importlib
from typing import Any

from qarm.encoders.config import EncoderConfig

_LAZY = {"ItemEncoder": "fusion", "ItemFeatures": "fusion", "item_features": "fusion", "ImageEncoder": "image",
         "TextEncoder": "text", "default_text_model_path": "text", "VisionBackbone": "vision"}

__all__ = ["EncoderConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"qarm.encoders.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'qarm.encoders' has no attribute {name!r}")
