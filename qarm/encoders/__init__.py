"""Item content encoders: text (HF transformers, MiniLM by default), image (EfficientNet-Lite0) and the
late-fusion item encoder with learned missing-modality vectors. Imports are light; models load on use."""

from __future__ import annotations

from qarm.encoders.fusion import ItemEncoder, ItemFeatures, item_features
from qarm.encoders.image import ImageEncoder
from qarm.encoders.text import TextEncoder, default_text_model_path

__all__ = ["ImageEncoder", "ItemEncoder", "ItemFeatures", "TextEncoder", "default_text_model_path", "item_features"]
