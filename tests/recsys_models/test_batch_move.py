"""RankBatch.to / pin_memory move every field, for every model's batch layout (issue 24: a batch moved to the
GPU lost its sequence fields, and DIN/SIM then refused it as a pooled batch)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys_models.config import MODELS
from recsys_models.factory import batch_layout
from recsys_models.features import FeatureSet, FeatureSpec, ItemField, RankBatch, build_batch

torch.set_num_threads(1)

# 4 items, 3 users, one RQ level (K = 3), genres as a ragged bag (-1 = pad), one user feature, 2-d content.
CODES = torch.tensor([[0], [2], [1], [0]])
GENRES = torch.tensor([[0, -1], [1, 2], [-1, -1], [2, -1]])
CONTENT = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [4.0, 0.0]])
# B = 2 rows: user 2 scores item 1 after history [3, 0]; user 0 scores item 2 with an empty history.
ROWS = (torch.tensor([2, 0]), torch.tensor([1, 2]), torch.tensor([[3, 0], [0, 0]]), torch.tensor([2, 0]),
        torch.tensor([1.0, 0.0]))
# (model, dedup): every layout a ranker reads, and the sequence layout's fixed-size (dedup=False) form.
CASES = [(m, True) for m in MODELS] + [("din", False)]


def _fs() -> FeatureSet:
    fields = (ItemField("item", "t_item", 4), ItemField("rq_0", "t_rq_0", 3), ItemField("genres", "t_genres", 3, 2))
    spec = FeatureSpec(n_items=4, n_users=3, embedding_dim=4, user_features=(("gender", 2),), item_fields=fields,
                       dense_dim=2)
    return FeatureSet(spec=spec, item_tokens={"item": torch.arange(4)[:, None], "rq_0": CODES, "genres": GENRES},
                      user_table=torch.tensor([[1], [0], [1]]), content=CONTENT)


def _batch(model: str, dedup: bool) -> RankBatch:
    return build_batch(_fs(), *ROWS, layout=batch_layout(model), dedup=dedup)


def _present(batch: RankBatch) -> set[str]:
    return {f.name for f in dataclasses.fields(batch) if getattr(batch, f.name) is not None}


def _assert_moved(before: RankBatch, after: RankBatch, device: torch.device, *, same_values: bool) -> None:
    """Field by field: the same fields set, each tensor on `device` with its shape and dtype (and, when the
    target device holds data, its values); each KJT with its keys, lengths and values."""
    assert _present(after) == _present(before)
    for f in dataclasses.fields(before):
        old, new = getattr(before, f.name), getattr(after, f.name)
        if old is None:
            continue
        if isinstance(old, KeyedJaggedTensor):
            assert isinstance(new, KeyedJaggedTensor), f.name
            assert new.keys() == old.keys() and new.stride() == old.stride(), f.name
            pairs = [(old.values(), new.values()), (old.lengths(), new.lengths())]
        else:
            pairs = [(old, new)]
        for o, n in pairs:
            assert isinstance(n, torch.Tensor), f.name
            assert n.device.type == device.type, f.name
            assert n.shape == o.shape and n.dtype == o.dtype, f.name
            if same_values:
                assert torch.equal(n.cpu(), o), f.name


@pytest.mark.parametrize(("model", "dedup"), CASES)
def test_to_meta_keeps_every_field(model: str, dedup: bool) -> None:
    batch = _batch(model, dedup)
    expected = {"sparse", "dense", "labels", "item_idx", "hist", "hist_len"}
    if batch_layout(model) == "sequence":
        expected |= {"items", "unique_items", "target_pos", "hist_pos"}
    assert _present(batch) == expected  # the fixture exercises every field the layout has
    meta = torch.device("meta")
    _assert_moved(batch, batch.to(meta), meta, same_values=False)
    _assert_moved(batch, batch.to(meta, non_blocking=True), meta, same_values=False)


@pytest.mark.parametrize(("model", "dedup"), CASES)
def test_pin_memory_pins_every_tensor(model: str, dedup: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU-only torch cannot pin; a recording stand-in for Tensor.pin_memory checks the traversal: every tensor
    of every field (inside the KJTs too) goes through it, and the values survive."""
    pinned: list[torch.Tensor] = []

    def fake_pin(t: torch.Tensor) -> torch.Tensor:
        out = t.clone()
        pinned.append(out)
        return out

    batch = _batch(model, dedup)
    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    out = batch.pin_memory()
    monkeypatch.undo()
    _assert_moved(batch, out, torch.device("cpu"), same_values=True)
    ids = {id(t) for t in pinned}
    for f in dataclasses.fields(out):
        v = getattr(out, f.name)
        tensors = [v.values(), v.lengths()] if isinstance(v, KeyedJaggedTensor) else [v] if v is not None else []
        assert all(id(t) in ids for t in tensors), f.name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory and a second device need CUDA")
@pytest.mark.parametrize(("model", "dedup"), CASES)
def test_pin_then_move_to_cuda(model: str, dedup: bool) -> None:
    batch = _batch(model, dedup)
    pinned = batch.pin_memory()
    for f in dataclasses.fields(pinned):
        v = getattr(pinned, f.name)
        if isinstance(v, KeyedJaggedTensor):
            assert v.values().is_pinned() and v.lengths().is_pinned(), f.name
        elif v is not None:
            assert v.is_pinned(), f.name
    cuda = torch.device("cuda")
    _assert_moved(batch, pinned.to(cuda, non_blocking=True), cuda, same_values=True)
