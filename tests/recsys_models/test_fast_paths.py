"""DIN and SIM's fast (jagged, distinct-item) forward against the padded computation it replaced (`forward_reference`):
same logits, loss and gradients on random small batches; `select_items` against a per-position loop."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from recsys_models.attention import DinAttention, MultiHeadTargetAttention
from recsys_models.config import DinConfig, SimConfig
from recsys_models.din import build_din
from recsys_models.features import FeatureSet, FeatureSpec, ItemField, RankBatch, build_batch
from recsys_models.item_encoder import Selection, latest_positions, select_items
from recsys_models.sim import build_sim

N, U, K = 15, 4, 3  # items, users, codebook size


def _fs(seed: int, dense: bool, vq: bool) -> FeatureSet:
    g = torch.Generator().manual_seed(seed)
    fields = [ItemField("item", "t_item", N), ItemField("rq_0", "t_rq_0", K)]
    tokens = {"item": torch.arange(N)[:, None], "rq_0": torch.randint(0, K, (N, 1), generator=g)}
    if vq:  # a multi-token bag sharing the item table (the per-field split of the pooled rows is then needed)
        fields.append(ItemField("vq", "t_item", N, 2))
        tokens["vq"] = torch.randint(-1, N, (N, 2), generator=g)
    spec = FeatureSpec(n_items=N, n_users=U, embedding_dim=4, item_fields=tuple(fields), dense_dim=3 if dense else 0)
    return FeatureSet(spec=spec, item_tokens=tokens, content=torch.randn(N, 3, generator=g) if dense else None)


def _batch(fs: FeatureSet, b: int, t: int, seed: int, dedup: bool) -> RankBatch:
    g = torch.Generator().manual_seed(seed)
    hist_len = torch.randint(0, t + 1, (b,), generator=g)
    hist = torch.randint(0, N, (b, t), generator=g) * (torch.arange(t)[None] < hist_len[:, None])
    return build_batch(fs, torch.randint(0, U, (b,), generator=g), torch.randint(0, N, (b,), generator=g), hist,
                       hist_len, torch.randint(0, 2, (b,), generator=g).float(), "sequence", dedup=dedup)


def _loss_and_grads(model: nn.Module, forward: object, batch: RankBatch) -> tuple[torch.Tensor, torch.Tensor,
                                                                                  dict[str, torch.Tensor]]:
    model.zero_grad()
    logits = forward(batch)  # type: ignore[operator]
    loss = nn.functional.binary_cross_entropy_with_logits(logits, batch.labels)
    loss.backward()
    return logits.detach(), loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                            if p.grad is not None}


def _assert_same(model: nn.Module, batch: RankBatch) -> None:
    fast = _loss_and_grads(model, model, batch)
    ref = _loss_and_grads(model, model.forward_reference, batch)  # type: ignore[union-attr]
    torch.testing.assert_close(fast[0], ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast[1], ref[1], atol=1e-5, rtol=1e-5)
    assert fast[2].keys() == ref[2].keys()  # the same parameters receive a gradient
    for name in ref[2]:
        torch.testing.assert_close(fast[2][name], ref[2][name], atol=1e-5, rtol=1e-5, msg=name)


CASES = dict(b=st.integers(1, 6), t=st.integers(1, 7), seed=st.integers(0, 10_000), dense=st.booleans(),
             vq=st.booleans(), dedup=st.booleans())


@settings(max_examples=30, deadline=None)
@given(max_len=st.integers(1, 8), softmax=st.booleans(), hidden=st.sampled_from([(6,), (6, 3)]), **CASES)
def test_din_fast_equals_padded_reference(b: int, t: int, seed: int, dense: bool, vq: bool, dedup: bool,
                                          max_len: int, softmax: bool, hidden: tuple[int, ...]) -> None:
    # hidden (6,) without softmax: the one-call JaggedDinPool; the rest through autograd op by op
    fs = _fs(seed, dense, vq)
    torch.manual_seed(seed)
    model = build_din(fs.spec, fs.content, DinConfig(attention_hidden=hidden, attention_softmax=softmax, mlp=(8,),
                                                     max_len=max_len))
    assert model.attention.fused() == (hidden == (6,) and not softmax)
    _assert_same(model, _batch(fs, b, t, seed, dedup))


def _assert_same_output_and_gradients(module: nn.Module, fused, reference, call, leaves: list[torch.Tensor],
                                      weight: torch.Tensor) -> None:
    """A hand-written backward against autograd through the op-by-op reference (float64, 1e-10): the output
    and the gradients of (output * weight).sum() w.r.t. the input leaves and every parameter of `module`."""
    out = {}
    for name, fn in (("fused", fused), ("reference", reference)):
        module.zero_grad()
        for leaf in leaves:
            leaf.grad = None
        y = call(fn)
        (y * weight).sum().backward()
        out[name] = [y.detach(), *(leaf.grad for leaf in leaves), *(p.grad for p in module.parameters())]
    for a, r in zip(out["fused"], out["reference"], strict=True):
        torch.testing.assert_close(a, r, atol=1e-10, rtol=1e-10)


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 6), t=st.integers(1, 7), u=st.integers(1, 9), seed=st.integers(0, 10_000),
       slope=st.sampled_from([0.25, -0.7, 1.0, 1.5]), chunk=st.sampled_from([1, 2, 5, 4096]))
def test_fused_din_unit_equals_autograd(b: int, t: int, u: int, seed: int, slope: float, chunk: int) -> None:
    # JaggedDinPool's hand-written backward against autograd through the op-by-op unit, in float64 (tight): the
    # query and the pooled history, the gradients of items (through both gathers) and of every parameter, the
    # PReLU's slope included; empty rows, rows longer than a chunk and chunk boundaries included
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    att = DinAttention(4, (5,)).double()
    with torch.no_grad():
        att.rest[0].weight.fill_(slope)
    hist_len = torch.randint(0, t + 1, (b,), generator=g)
    positions, mask = latest_positions(hist_len, t)
    sel = select_items(torch.randint(0, u, (b, t), generator=g), positions, mask)
    items = torch.randn(u, 4, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, u, (b,), generator=g)
    weight = torch.randn(2, b, 4, generator=g, dtype=torch.float64)

    def reference(items: torch.Tensor, target: torch.Tensor, sel: Selection) -> tuple[torch.Tensor, torch.Tensor]:
        query = items.index_select(0, target)
        return query, att.forward_jagged_autograd(query, items, sel)

    _assert_same_output_and_gradients(att, lambda *a: torch.stack(att.forward_jagged(*a, chunk=chunk)),
                                      lambda *a: torch.stack(reference(*a)), lambda f: f(items, target, sel),
                                      [items], weight)


@settings(max_examples=30, deadline=None)
@given(search=st.sampled_from(["hard", "soft"]), top_k=st.integers(1, 8), recent=st.integers(1, 8), **CASES)
def test_sim_fast_equals_padded_reference(b: int, t: int, seed: int, dense: bool, vq: bool, dedup: bool,
                                          search: str, top_k: int, recent: int) -> None:
    fs = _fs(seed, dense, vq)
    torch.manual_seed(seed)
    codes = torch.randint(0, K, (N, 2), generator=torch.Generator().manual_seed(seed + 1))
    cfg = SimConfig(search=search, top_k=top_k, recent=recent, mlp=(8,))  # type: ignore[arg-type]
    model = build_sim(fs.spec, fs.content, cfg, search_codes=codes if search == "hard" else None)
    _assert_same(model, _batch(fs, b, t, seed, dedup))


def test_the_comparison_sees_a_different_history() -> None:
    # Relational guard: the comparison above is not vacuous; one history item fewer changes the logits.
    fs = _fs(0, dense=True, vq=True)
    torch.manual_seed(0)
    model = build_din(fs.spec, fs.content, DinConfig(attention_hidden=(6,), mlp=(8,), max_len=5))
    batch, shorter = _batch(fs, 4, 5, 0, dedup=True), _batch(fs, 4, 5, 0, dedup=True)
    longest = int(shorter.hist_len.argmax())
    assert shorter.hist_len[longest] > 0
    shorter.hist_len[longest] -= 1  # the longest row forgets its latest item
    torch.testing.assert_close(model(batch), model.forward_reference(batch), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(model(batch), model.forward_reference(shorter), atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 5), t=st.integers(1, 6), r=st.integers(1, 7), seed=st.integers(0, 999))
def test_select_items_equals_a_loop_over_positions(b: int, t: int, r: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    hist_len = torch.randint(0, t + 1, (b,), generator=g)
    hist_pos = torch.randint(0, 20, (b, t), generator=g)
    positions, mask = latest_positions(hist_len, r)
    sel = select_items(hist_pos, positions, mask)
    rows, items = [], []
    for row in range(b):  # the latest min(r, len) positions of each row, oldest first
        for p in range(max(0, int(hist_len[row]) - r), int(hist_len[row])):
            rows.append(row)
            items.append(int(hist_pos[row, p]))
    assert sel.row.tolist() == rows and sel.item.tolist() == items
    lengths = [rows.count(row) for row in range(b)]
    assert sel.offsets.tolist() == [sum(lengths[:row]) for row in range(b + 1)]
    assert sel.lengths.tolist() == lengths and sel.width == r



def test_fused_din_unit_flops_are_counted() -> None:
    """`perf rank`'s FLOP counter (benchmark.perf.rank.IN_PLACE_FLOPS) sees the fused unit's in-place matrix
    products, which torch's own table misses (the figure `perf rank` printed for DIN fell from 0.81 to 0.53 MFLOP
    a sample when the unit was fused). Counted, the fused unit's forward and backward come to at least the
    op-by-op unit's: the latter does part of its pooling as embedding-bag sums, which count zero."""
    from torch.utils.flop_counter import FlopCounterMode

    from benchmark.perf.rank import IN_PLACE_FLOPS

    g = torch.Generator().manual_seed(0)
    att = DinAttention(16, (36,))
    b, t, u = 64, 20, 200
    positions, mask = latest_positions(torch.full((b,), t), t)
    sel = select_items(torch.randint(0, u, (b, t), generator=g), positions, mask)
    items = torch.randn(u, 16, generator=g, requires_grad=True)
    target = torch.randint(0, u, (b,), generator=g)

    def fused_unit(items: torch.Tensor) -> torch.Tensor:
        return att.forward_jagged(items, target, sel)[1]

    def plain_unit(items: torch.Tensor) -> torch.Tensor:
        return att.forward_jagged_autograd(items.index_select(0, target), items, sel)

    def count(fn, mapping) -> int:
        counter = FlopCounterMode(display=False, custom_mapping=mapping)
        with counter:
            fn(items).sum().backward()
        return counter.get_total_flops()

    assert att.fused()
    fused, plain = count(fused_unit, IN_PLACE_FLOPS), count(plain_unit, IN_PLACE_FLOPS)
    assert count(fused_unit, {}) < fused
    assert plain <= fused <= 2 * plain, (fused, plain)


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 6), t=st.integers(1, 7), d=st.integers(1, 6), heads=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_target_attention_pool_equals_autograd(b: int, t: int, d: int, heads: int, seed: int) -> None:
    # TargetAttentionPool's hand-written backward against autograd through the op-by-op ESU, in float64 (tight);
    # empty rows included
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    att = MultiHeadTargetAttention(d, heads).double()
    query = torch.randn(b, d, generator=g, dtype=torch.float64, requires_grad=True)
    keys = torch.randn(b, t, d, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.arange(t)[None, :] < torch.randint(0, t + 1, (b,), generator=g)[:, None]
    weight = torch.randn(b, d, generator=g, dtype=torch.float64)
    _assert_same_output_and_gradients(att, att.forward, att.forward_autograd, lambda f: f(query, keys, mask),
                                      [query, keys], weight)
