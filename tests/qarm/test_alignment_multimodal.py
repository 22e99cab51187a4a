"""Alignment over both towers: a tiny random ViT + BERT go through encode, align (top block trainable: its
weights change, the frozen blocks do not) and codes; per-modality trainable_layers and fusion settings; the
fused head recovers planted pairs that need both modalities better than either modality alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from qarm.alignment import AlignConfig, align
from qarm.alignment.config import TrainableLayers
from qarm.alignment.towers import build_align_model
from qarm.encoders import ImageEncoder, ItemFeatures, TextEncoder, item_features
from qarm.errors import QarmError
from qarm.losses import info_nce


def _items(image_files: list[str], n: int = 16) -> tuple[list[str], list[str | None]]:
    texts = [f"item {i} style {'abcd'[i % 4]}" for i in range(n)]
    paths: list[str | None] = [image_files[i % len(image_files)] for i in range(n)]
    paths[-1] = None  # one item without an image: the missing-modality vector
    return texts, paths


def _pairs(n: int) -> pl.DataFrame:
    return pl.DataFrame({"trigger_idx": list(range(n - 4)), "target_idx": [i + 4 for i in range(n - 4)]}).cast(
        pl.Int32)


def test_vit_and_bert_encode_align_and_code(tiny_models: dict[str, Path], image_files: list[str]) -> None:
    from qarm.quantize import RQKmeans

    texts, paths = _items(image_files)
    text_enc = TextEncoder(tiny_models["bert"], max_length=16)
    image_enc = ImageEncoder(tiny_models["vit"], batch_size=4)
    before = {k: v.clone() for k, v in image_enc.backbone.state_dict().items()}
    feats = item_features(texts, paths, text_encoder=text_enc, image_encoder=image_enc)
    assert feats.dims == {"text": 32, "image": 32} and feats.present["image"].tolist() == [True] * 15 + [False]
    cfg = AlignConfig(dim=8, epochs=2, batch_size=8, trainable_layers=TrainableLayers(text=1, image=1),
                      fusion="gated", encoder_lr=1e-3, val_frac=0.0)
    res = align(_pairs(16), features=feats, texts=texts, image_paths=paths, text_encoder=text_enc,
                image_encoder=image_enc, config=cfg)
    assert res.embeddings.shape == (16, 8) and np.isfinite(res.embeddings).all()
    assert res.summary.modalities == ("image", "text")
    assert res.summary.trained == ("gated fusion head (image + text) + the top 1 image encoder block(s) + the top 1 "
                                   "text encoder block(s) (fine-tuned)")
    image_keys = {k for k in res.state_dict if k.startswith("image_tower.")}
    # the top ViT layer (top.0) and the final layernorm above it (top.1) are trained and saved; nothing else
    assert image_keys and {k.split(".")[1] for k in image_keys} == {"0", "1"}
    assert {k.split(".")[1] for k in res.state_dict if k.startswith("text_tower.")} == {"0"}
    top_block = image_enc.backbone.blocks()[1].state_dict()
    assert any(not torch.equal(res.state_dict[f"image_tower.0.{k}"], v) for k, v in top_block.items())
    assert all(torch.equal(v, image_enc.backbone.state_dict()[k]) for k, v in before.items())  # caller untouched
    codes = RQKmeans(levels=2, codebook_size=4, niter=5, seed=0).fit(res.embeddings).encode(res.embeddings)
    assert codes.shape == (16, 2) and codes.min() >= 0 and codes.max() < 4


@pytest.mark.parametrize(("family", "layers"), [("vit", 1), ("resnet", "all")])
def test_only_the_trainable_image_blocks_change(family: str, layers: int | str, tiny_models: dict[str, Path],
                                                image_files: list[str]) -> None:
    texts, paths = _items(image_files, n=8)
    image_enc = ImageEncoder(tiny_models[family], batch_size=4)
    feats = item_features(None, paths, image_encoder=image_enc)
    cfg = AlignConfig(dim=8, trainable_layers=TrainableLayers(image=layers), encoder_lr=1e-2)
    model, groups = build_align_model(feats, cfg, image_paths=paths, image_encoder=image_enc)
    tower = model.towers["image"]
    start = {k: v.clone() for k, v in tower.backbone.state_dict().items()}
    opt = torch.optim.SGD(groups, lr=1e-2)  # type: ignore[arg-type]
    for _ in range(3):
        z = model(torch.arange(8))
        loss = info_nce(z[:4], z[4:], temperature=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    moved = {k for k, v in tower.backbone.state_dict().items() if not torch.equal(v, start[k])}
    if layers == "all":  # the stem and the lowest stage train too
        assert any(k.startswith("model.embedder.") for k in moved)
        assert any(k.startswith("model.encoder.stages.0.") for k in moved)
    else:  # ViT: only layer 1 (the top block) and the final layernorm; embeddings and layer 0 stay frozen
        assert moved and all(k.startswith(("model.layers.1.", "model.layernorm.")) for k in moved)
        assert any(k.startswith("model.layers.1.") for k in moved)


def test_trainable_layers_table_and_errors(tiny_models: dict[str, Path], image_files: list[str]) -> None:
    assert AlignConfig(trainable_layers=2).towers == TrainableLayers(text=2, image=0)
    assert AlignConfig(trainable_layers=-1).layers == "all"
    cfg = AlignConfig(trainable_layers=TrainableLayers(text=0, image=-1))
    assert cfg.towers.of("image") == "all" and cfg.layers == 0 and cfg.trains_encoder(["image"])
    assert not cfg.trains_encoder(["text"])
    with pytest.raises(QarmError, match=r"TrainableLayers\.image: expected 0 \(head only\)"):
        TrainableLayers(image="top")
    with pytest.raises(QarmError, match=r"AlignConfig\.fusion"):
        AlignConfig(fusion="sum")  # type: ignore[arg-type]
    _, paths = _items(image_files, n=8)
    conv = torch.nn.Conv2d(3, 4, 3)  # a plain module has no blocks: only 0 or "all"
    feats = item_features(None, paths, image_encoder=ImageEncoder(conv, image_size=16))
    with pytest.raises(QarmError, match="no block structure"):
        build_align_model(feats, AlignConfig(trainable_layers=TrainableLayers(image=1)), image_paths=paths,
                          image_encoder=ImageEncoder(conv, image_size=16))
    with pytest.raises(QarmError, match=r"trainable_layers\.image != 0 needs image_paths"):
        build_align_model(feats, AlignConfig(trainable_layers=TrainableLayers(image=1)))


def planted_two_views(per: int = 12, seed: int = 0) -> tuple[dict[str, np.ndarray], pl.DataFrame]:
    """16 clusters = (a, b) in 4 x 4; the text features see only a, the image features only b (plus noise);
    pairs join items of the same (a, b). One modality alone cannot tell 4 clusters apart; both together can."""
    rng = np.random.default_rng(seed)
    n = 16 * per
    cluster = np.repeat(np.arange(16), per)
    a, b = cluster // 4, cluster % 4

    def view(group: np.ndarray) -> np.ndarray:
        centres = 2.0 * rng.standard_normal((4, 8))
        x = np.concatenate([centres[group] + 0.3 * rng.standard_normal((n, 8)), rng.standard_normal((n, 8))], axis=1)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    views = {"text": view(a), "image": view(b)}
    left = rng.integers(0, n, 2500)
    right = np.array([rng.choice(np.flatnonzero((cluster == cluster[i]) & (np.arange(n) != i))) for i in left])
    pairs = pl.DataFrame({"trigger_idx": np.minimum(left, right), "target_idx": np.maximum(left, right)}).cast(
        pl.Int32).unique(maintain_order=True)
    return views, pairs


@pytest.mark.parametrize("fusion", ["concat", "gated"])
def test_fused_alignment_beats_either_modality_alone(fusion: str) -> None:
    views, pairs = planted_two_views()
    n = len(views["text"])
    cfg = AlignConfig(dim=16, epochs=10, batch_size=128, lr=1e-2, temperature=0.1, val_frac=0.2, hidden=0,
                      fusion=fusion)  # type: ignore[arg-type]
    recall = {}
    for mods in (("text",), ("image",), ("image", "text")):
        feats = ItemFeatures({m: views[m] for m in mods}, {m: np.ones(n, bool) for m in mods})
        recall[mods] = align(pairs, features=feats, config=cfg, seed=0).summary.aligned_recall
    # ideal recall@10: one modality ranks the 47 same-group items alike (~10/47 of partners found); both: ~10/11
    best_single = max(recall[("text",)], recall[("image",)])
    assert recall[("image", "text")] > best_single + 0.25, recall
