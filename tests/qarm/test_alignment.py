"""Alignment: on planted-cluster data alignment beats the frozen encoder on test pair recall@10, also for items
it never saw (split by item); outputs cover ALL items; weights save as safetensors; partial and full
fine-tuning of a tiny BERT. Held-out splits and the references table: tests/qarm/test_alignment_heldout.py."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from qarm.alignment import AlignConfig, align, describe_trained, recall_at_k
from qarm.encoders import ItemFeatures, TextEncoder, default_text_model_path
from qarm.errors import QarmError


def planted(n_clusters: int = 12, per: int = 20, signal: int = 8, noise: int = 56, seed: int = 0):
    """Items in clusters. Frozen features = a weak cluster signal in `signal` dims next to strong
    nuisance noise in `noise` dims, so frozen cosine mostly reflects the noise; pairs join items of the
    same cluster. A projection that keeps the signal dims can raise pair recall a lot."""
    rng = np.random.default_rng(seed)
    n = n_clusters * per
    cluster = np.repeat(np.arange(n_clusters), per)
    centres = rng.standard_normal((n_clusters, signal))
    x = np.concatenate([centres[cluster] + 0.1 * rng.standard_normal((n, signal)),
                        3.0 * rng.standard_normal((n, noise))], axis=1).astype(np.float32)
    a = rng.integers(0, n, size=3000)
    b = np.array([rng.choice(np.flatnonzero((cluster == cluster[i]) & (np.arange(n) != i))) for i in a])
    pairs = pl.DataFrame({"trigger_idx": np.minimum(a, b), "target_idx": np.maximum(a, b)}).cast(pl.Int32).unique(
        maintain_order=True)
    feats = ItemFeatures({"text": x / np.linalg.norm(x, axis=1, keepdims=True)}, {"text": np.ones(n, bool)})
    return feats, pairs


@pytest.mark.parametrize("split", ["item", "pair"])
def test_alignment_beats_frozen_on_planted_clusters(tmp_path: Path, split: str) -> None:
    feats, pairs = planted()
    cfg = AlignConfig(dim=16, epochs=12, batch_size=128, lr=1e-2, temperature=0.1, recall_k=10, val_frac=0.2,
                      hidden=0, split=split)  # type: ignore[arg-type]
    res = align(pairs, features=feats, config=cfg)
    # recall@10 of a perfect cluster embedding: 10 of the 19 same-cluster items (ties aside); random ~ 10/239
    s = res.summary
    assert s.frozen_recall is not None and s.aligned_recall is not None
    assert s.aligned_recall > s.frozen_recall + 0.2
    assert res.embeddings.shape == (240, 16) and res.embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(res.embeddings, axis=1), 1.0, atol=1e-5)
    assert res.frozen_embeddings.shape == (240, 64)
    assert [h.epoch for h in s.history] == list(range(1, len(s.history) + 1))
    assert s.history[-1].loss < s.history[0].loss
    best = max(h.val_recall for h in s.history)
    assert s.val_recall == pytest.approx(best)  # the best validation epoch's weights are restored
    assert s.history[s.best_epoch - 1].val_recall == pytest.approx(best)
    assert s.trained == describe_trained(cfg) and describe_trained(cfg, short=True) == "aligned head"
    assert s.split == split and s.n_test_pairs > 0 and s.references is not None
    assert s.references.row("aligned").recall.overall == s.aligned_recall  # type: ignore[union-attr]
    out = res.save(tmp_path / "aligned")
    tensors = load_file(str(out / "weights.safetensors"))
    assert set(tensors) == {"head.missing.text", "head.proj.weight", "head.proj.bias"}
    assert np.array_equal(np.load(out / "embeddings.npy"), res.embeddings)
    cfg_json = json.loads((out / "config.json").read_text())
    assert cfg_json["align_config"]["dim"] == 16 and cfg_json["summary"]["best_epoch"] == s.best_epoch


def test_cold_items_without_pairs_or_text_get_embeddings() -> None:
    feats, pairs = planted(n_clusters=4, per=10)
    present = np.ones(40, bool)
    present[-3:] = False  # three items without text: the learned missing vector
    feats = ItemFeatures({"text": feats.features["text"]}, {"text": present})
    pairs = pairs.filter(pl.col("target_idx") < 30)  # items 30..39 never appear in a pair
    res = align(pairs, features=feats, config=AlignConfig(dim=8, epochs=2, batch_size=32))
    assert res.embeddings.shape == (40, 8) and np.isfinite(res.embeddings).all()
    assert np.allclose(res.embeddings[-1], res.embeddings[-2])  # same (missing) input, same output


def test_recall_at_k_by_hand() -> None:
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    # query 0: others ranked 1 (0.9), 2 (0), 3 (-1). pair (0,1): 0->1 rank 0, 1->0 rank 0 -> hits at k=1
    assert recall_at_k(emb, np.array([0]), np.array([1]), k=1) == 1.0
    # pair (0,2): 0->2 rank 1 (miss at k=1); 2->0: scores from 2: 1 (0.1) > 0 (0) = 3 (0) -> rank 1, miss
    assert recall_at_k(emb, np.array([0]), np.array([2]), k=1) == 0.0
    # at k=2: 0->2 hits; 2->0 has one item above and one level (item 3): a random tie-break hits half the time
    assert recall_at_k(emb, np.array([0]), np.array([2]), k=2) == pytest.approx((1 + 0.5) / 2)
    assert recall_at_k(emb, np.array([0]), np.array([2]), k=3) == 1.0


def _tiny_bert(path: Path) -> Path:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(default_text_model_path() / name, path / name)
    return path


@pytest.mark.parametrize("trainable", [1, "all"])
def test_partial_and_full_fine_tuning(tmp_path: Path, trainable: int | str) -> None:
    enc = TextEncoder(_tiny_bert(tmp_path / "bert"), max_length=16)
    before = {k: v.clone() for k, v in enc.model.state_dict().items()}
    texts = [f"item {i} genre {'abc'[i % 3]}" for i in range(24)] + [""]
    pairs = pl.DataFrame({"trigger_idx": [i for i in range(21)], "target_idx": [i + 3 for i in range(21)]}).cast(
        pl.Int32)
    res = align(pairs, texts=texts, text_encoder=enc,
                config=AlignConfig(dim=8, epochs=2, batch_size=8, trainable_layers=trainable, encoder_lr=1e-3))
    assert res.embeddings.shape == (25, 8) and np.isfinite(res.embeddings).all()
    assert res.frozen_embeddings.shape == (25, 32)
    assert np.allclose(res.frozen_embeddings[:24], enc.encode(texts[:24]), atol=1e-5)
    tower = {k for k in res.state_dict if k.startswith("text_tower.")}
    if trainable == 1:  # only the top block is trained and saved
        assert tower and all(k.startswith("text_tower.0.") for k in tower)
    else:
        assert any("embeddings" in k for k in tower)
    assert all(torch.equal(v, enc.model.state_dict()[k]) for k, v in before.items())  # caller's model untouched


def test_bad_settings_raise(tmp_path: Path) -> None:
    feats, pairs = planted(n_clusters=2, per=5)
    with pytest.raises(QarmError, match="trainable_layers"):
        align(pairs, features=feats, config=AlignConfig(trainable_layers=1))
    with pytest.raises(QarmError, match="trainable_layers"):
        AlignConfig(trainable_layers="some")
    with pytest.raises(QarmError, match="item_idx"):
        align(pairs.with_columns(pl.lit(99, pl.Int32).alias("target_idx")), features=feats)


def test_length_sorted_chunks_give_the_one_batch_result(tmp_path: Path) -> None:
    from qarm.alignment.towers import TextTower

    enc = TextEncoder(_tiny_bert(tmp_path / "bert"), max_length=16)
    texts = [" ".join(["word"] * (1 + i % 7)) + f" {i}" for i in range(12)]
    tower = TextTower(enc, texts, 1)
    rows = torch.tensor([5, 0, 11, 3, 6, 2, 9])
    with torch.no_grad():
        one = tower(rows)
        tower.chunk = 3
        assert torch.allclose(tower(rows), one, atol=1e-5)


def test_refit_trains_on_every_pair_for_the_chosen_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    """align.refit: after the selection run, `best_epoch` more passes, each over train + validation + test pairs;
    the held-out figures are the selected model's (the same as without a refit); seeded, so it repeats."""
    import qarm.alignment.train as T

    feats, pairs = planted()
    cfg = AlignConfig(dim=16, epochs=6, batch_size=128, lr=1e-2, temperature=0.1, val_frac=0.2, patience=2)
    passes: list[int] = []
    real = T._epoch

    def counting(model, opt, sched, train, *args, **kwargs):  # noqa: ANN001, ANN202
        passes.append(len(train))
        return real(model, opt, sched, train, *args, **kwargs)

    monkeypatch.setattr(T, "_epoch", counting)
    res = align(pairs, features=feats, config=cfg)
    s = res.summary
    selection = len(s.history)
    every = s.n_train_pairs + s.n_val_pairs + s.n_test_pairs
    assert s.refit and s.refit_epochs == s.best_epoch and s.n_refit_pairs == every == pairs.height
    assert passes == [s.n_train_pairs] * selection + [every] * s.best_epoch
    assert res.selected_embeddings is not None and not np.allclose(res.embeddings, res.selected_embeddings)
    passes.clear()
    plain = align(pairs, features=feats, config=dataclasses.replace(cfg, refit=False))
    assert passes == [s.n_train_pairs] * selection  # no refit: the selection run only
    assert not plain.summary.refit and plain.summary.n_refit_pairs == 0 and plain.selected_embeddings is None
    assert np.array_equal(plain.embeddings, res.selected_embeddings)
    assert plain.summary.aligned_recall == s.aligned_recall  # held-out figures: before the refit
    again = align(pairs, features=feats, config=cfg)
    assert np.array_equal(again.embeddings, res.embeddings)  # seeded: the refit repeats
