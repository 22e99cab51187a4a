"""Rankers: shapes, overfitting one tiny batch, the SIM GSU (hard and soft) against references."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from recsys_models.attention import MultiHeadTargetAttention, masked_softmax
from recsys_models.config import DinConfig, DlrmConfig, SimConfig
from recsys_models.din import build_din
from recsys_models.dlrm import build_dlrm
from recsys_models.errors import RecsysModelError
from recsys_models.factory import batch_layout
from recsys_models.features import FeatureSet, FeatureSpec, ItemField, RankBatch, build_batch
from recsys_models.sim import build_sim, hard_search, soft_search

N, U, L, K, B, T = 12, 5, 2, 4, 16, 6


def _fs(item_id: bool = True, codes: bool = True, dense: bool = False, vq: bool = False) -> FeatureSet:
    g = torch.Generator().manual_seed(0)
    fields, tokens = [], {}
    if item_id:
        fields.append(ItemField("item", "t_item", N))
        tokens["item"] = torch.arange(N)[:, None]
    if codes:
        c = torch.randint(0, K, (N, L), generator=g)
        for lv in range(L):
            fields.append(ItemField(f"rq_{lv}", f"t_rq_{lv}", K))
            tokens[f"rq_{lv}"] = c[:, lv : lv + 1].contiguous()
    if vq:
        fields.append(ItemField("vq", "t_item" if item_id else "t_vq", N, 3))
        tokens["vq"] = torch.randint(0, N, (N, 3), generator=g)
    spec = FeatureSpec(n_items=N, n_users=U, embedding_dim=8, item_fields=tuple(fields), dense_dim=4 if dense else 0)
    return FeatureSet(spec=spec, item_tokens=tokens, content=torch.randn(N, 4, generator=g) if dense else None)


def _batch(fs: FeatureSet, seed: int = 1, layout: str = "pooled") -> RankBatch:
    g = torch.Generator().manual_seed(seed)
    hist_len = torch.randint(0, T + 1, (B,), generator=g)
    hist = torch.randint(0, N, (B, T), generator=g) * (torch.arange(T)[None] < hist_len[:, None])
    labels = torch.randint(0, 2, (B,), generator=g).float()
    return build_batch(fs, torch.randint(0, U, (B,), generator=g), torch.randint(0, N, (B,), generator=g), hist,
                       hist_len, labels, layout)


SEARCH_CODES = torch.randint(0, K, (N, L), generator=torch.Generator().manual_seed(7))


def _models(fs: FeatureSet) -> dict[str, nn.Module]:
    sim = SimConfig(top_k=3, recent=2, mlp=(32,))
    return {
        "dlrm": build_dlrm(fs.spec, DlrmConfig(dense_arch=(16,), over_arch=(32,))),
        "dlrm_dcn": build_dlrm(fs.spec, DlrmConfig(dense_arch=(16,), over_arch=(32,), dcn=True, dcn_layers=2,
                                                   dcn_low_rank=4)),
        "din": build_din(fs.spec, fs.content, DinConfig(mlp=(32,), max_len=4)),
        "sim_hard": build_sim(fs.spec, fs.content, sim, search_codes=SEARCH_CODES),
        "sim_soft": build_sim(fs.spec, fs.content, dataclasses.replace(sim, search="soft")),
    }


@pytest.mark.parametrize("variant", ["ids", "codes_vq_dense", "codes_only"])
def test_shapes(variant: str) -> None:
    fs = {"ids": _fs(codes=False), "codes_vq_dense": _fs(dense=True, vq=True), "codes_only": _fs(item_id=False)}[variant]
    for name, model in _models(fs).items():
        out = model(_batch(fs, layout=batch_layout(name.split("_")[0])))
        assert out.shape == (B,) and torch.isfinite(out).all(), name


@pytest.mark.parametrize("name", ["dlrm", "dlrm_dcn", "din", "sim_hard", "sim_soft"])
def test_overfits_one_tiny_batch(name: str) -> None:
    torch.manual_seed(0)
    fs = _fs(dense=True, vq=True)
    batch = _batch(fs, layout=batch_layout(name.split("_")[0]))
    model = _models(fs)[name]
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(150):
        opt.zero_grad()
        loss = loss_fn(model(batch), batch.labels)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.05  # ln 2 = 0.69 at chance; 16 rows with distinct features are memorisable


def test_codes_only_has_no_item_id_table() -> None:
    fs = _fs(item_id=False)
    for name, model in _models(fs).items():
        tables = [n for n, _ in model.named_parameters() if "t_item" in n]
        assert tables == [], name


def test_hard_search_by_hand() -> None:
    # prefix depth 1; target code 7. history (oldest first) codes: pos 0..5 = 7, 1, 7, 2, 3, 7; length 6.
    target = torch.tensor([[7], [7], [5]])
    hist = torch.tensor([[7, 1, 7, 2, 3, 7], [7, 1, 7, 2, 3, 7], [5, 5, 0, 0, 0, 0]]).unsqueeze(-1)
    hist_len = torch.tensor([6, 4, 2])
    positions, mask = hard_search(target, hist, hist_len, k=4)
    # row 0: matches at 5, 2, 0 (most recent first), then the most recent non-match, 4.
    # row 1: only positions 0..3 exist: matches 2, 0, then non-matches 3, 1.
    # row 2: matches 1, 0; nothing else to fill.
    assert positions[0].tolist() == [5, 2, 0, 4] and mask[0].all()
    assert positions[1].tolist() == [2, 0, 3, 1] and mask[1].all()
    assert positions[2, :2].tolist() == [1, 0] and mask[2].tolist() == [True, True, False, False]


def test_hard_search_prefix_depth_two() -> None:
    target = torch.tensor([[1, 2]])
    hist = torch.tensor([[[1, 2], [1, 3], [1, 2], [0, 2]]])  # only positions 0 and 2 share both levels
    positions, mask = hard_search(target, hist, torch.tensor([4]), k=2)
    assert positions.tolist() == [[2, 0]] and mask.all()


def _hard_reference(target: list[int], hist: list[list[int]], k: int) -> list[int]:
    matched = [i for i in reversed(range(len(hist))) if hist[i] == target]
    others = [i for i in reversed(range(len(hist))) if hist[i] != target]
    return (matched + others)[:k]


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 5), t=st.integers(1, 8), p=st.integers(1, 2), k=st.integers(1, 10), seed=st.integers(0, 999))
def test_hard_search_equals_reference(b: int, t: int, p: int, k: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    target, hist = torch.randint(0, 2, (b, p), generator=g), torch.randint(0, 2, (b, t, p), generator=g)
    hist_len = torch.randint(0, t + 1, (b,), generator=g)
    positions, mask = hard_search(target, hist, hist_len, k)
    for i in range(b):
        n = int(hist_len[i])
        expected = _hard_reference(target[i].tolist(), hist[i, :n].tolist(), k)
        assert positions[i][mask[i]].tolist() == expected


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 5), t=st.integers(1, 8), k=st.integers(1, 10), seed=st.integers(0, 999))
def test_soft_search_equals_brute_force(b: int, t: int, k: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    query, keys = torch.randn(b, 3, generator=g), torch.randn(b, t, 3, generator=g)
    hist_len = torch.randint(0, t + 1, (b,), generator=g)
    positions, mask = soft_search(query, keys, hist_len, k)
    for i in range(b):
        n = int(hist_len[i])
        scores = [float(keys[i, j] @ query[i]) for j in range(n)]
        expected = sorted(range(n), key=lambda j: -scores[j])[:k]
        assert positions[i][mask[i]].tolist() == expected


def test_sim_search_is_the_callers_decision() -> None:
    fs = _fs(codes=False)  # hard search works on any code set, whether or not the features include codes
    assert build_sim(fs.spec, search_codes=SEARCH_CODES).search == "hard"
    assert build_sim(fs.spec, cfg=SimConfig(search="soft")).search == "soft"
    with pytest.raises(RecsysModelError, match="search='hard' needs search_codes"):
        build_sim(fs.spec)  # no silent fallback to soft search
    with pytest.raises(RecsysModelError, match="prefix_depth: expected 1..2"):
        build_sim(fs.spec, cfg=SimConfig(prefix_depth=3), search_codes=SEARCH_CODES)
    with pytest.raises(RecsysModelError, match=r"search_codes must be \(N=12, L\)"):
        build_sim(fs.spec, search_codes=SEARCH_CODES[:5])


def test_attention_empty_history_gives_zeros() -> None:
    w = masked_softmax(torch.randn(2, 3), torch.tensor([[True, False, True], [False, False, False]]))
    assert w[1].tolist() == [0.0, 0.0, 0.0] and w[0, 1] == 0 and torch.isclose(w[0].sum(), torch.tensor(1.0))


def test_multihead_one_head_is_softmax_attention() -> None:
    torch.manual_seed(0)
    att = MultiHeadTargetAttention(4, heads=1)
    q, keys, mask = torch.randn(1, 4), torch.randn(1, 3, 4), torch.tensor([[True, True, False]])
    scores = (att.k(keys[0, :2]) @ att.q(q[0])) / 2.0  # sqrt(head_dim = 4)
    expected = att.out(torch.softmax(scores, 0) @ att.v(keys[0, :2]))
    assert torch.allclose(att(q, keys, mask)[0], expected, atol=1e-6)


def test_latest_positions_by_hand() -> None:
    from recsys_models.item_encoder import latest_positions

    positions, mask = latest_positions(torch.tensor([5, 1, 0]), 3)
    # history length 5: positions 2, 3, 4 (most recent last); length 1: only position 0; length 0: none.
    assert positions[0].tolist() == [2, 3, 4] and mask[0].all()
    assert mask[1].tolist() == [False, False, True] and positions[1, 2] == 0
    assert not mask[2].any()


@settings(max_examples=20, deadline=None)
@given(b=st.integers(1, 4), t=st.integers(1, 6), d=st.integers(1, 5), seed=st.integers(0, 999))
def test_din_attention_fast_scores_equal_concatenation(b: int, t: int, d: int, seed: int) -> None:
    from recsys_models.attention import DinAttention

    torch.manual_seed(seed)
    att = DinAttention(d, hidden=(8, 4))
    q, keys = torch.randn(b, d), torch.randn(b, t, d)
    assert torch.allclose(att.scores(q, keys), att.scores_reference(q, keys), atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(b=st.integers(1, 4), t=st.integers(1, 6), d=st.integers(1, 6), heads=st.integers(1, 3), seed=st.integers(0, 999))
def test_multihead_absorbed_equals_reference(b: int, t: int, d: int, heads: int, seed: int) -> None:
    torch.manual_seed(seed)
    att = MultiHeadTargetAttention(d, heads)
    q, keys = torch.randn(b, d), torch.randn(b, t, d)
    mask = torch.rand(b, t) < 0.7
    mask[0] = False  # an empty history
    assert torch.allclose(att(q, keys, mask), att.forward_reference(q, keys, mask), atol=1e-5)


def test_din_without_user_context_reads_no_user_feature() -> None:
    """user_context off (RecBole's DIN): the MLP reads [target, interest, dense] only, so the logits do not move
    when the rows' users change; with it on (the default) they do, and the MLP is wider by the context."""
    fs = _fs()
    torch.manual_seed(0)
    on = build_din(fs.spec, fs.content, DinConfig(mlp=(32,), max_len=4))
    torch.manual_seed(0)
    off = build_din(fs.spec, fs.content, DinConfig(mlp=(32,), max_len=4, user_context=False))
    assert off.context is None and on.context is not None
    first = lambda m: next(x for x in m.head.modules() if isinstance(x, nn.Linear))  # noqa: E731
    assert first(on).in_features - first(off).in_features == on.context.dim > 0
    names = {n for n, _ in off.named_parameters()}
    assert not any(n.startswith("context.") for n in names)

    def batch(users_seed: int) -> RankBatch:  # same items, histories and labels; other users
        gen = torch.Generator().manual_seed(1)
        hist_len = torch.randint(0, T + 1, (B,), generator=gen)
        hist = torch.randint(0, N, (B, T), generator=gen) * (torch.arange(T)[None] < hist_len[:, None])
        labels = torch.randint(0, 2, (B,), generator=gen).float()
        items = torch.randint(0, N, (B,), generator=gen)
        users = torch.randint(0, U, (B,), generator=torch.Generator().manual_seed(users_seed))
        return build_batch(fs, users, items, hist, hist_len, labels, batch_layout("din"))

    with torch.no_grad():
        assert torch.equal(off(batch(1)), off(batch(2)))
        assert not torch.allclose(on(batch(1)), on(batch(2)))
        assert torch.allclose(off(batch(1)), off.forward_reference(batch(1)), atol=1e-6)
