"""InfoNCE: values from the closed form (both implementations), duplicate masking, input checks, and the fused
`info_nce` against `info_nce_reference`: loss and gradients over a grid of call patterns, extreme rows, gradcheck."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qarm.errors import QarmError
from qarm.losses import duplicate_entries, duplicate_mask, info_nce, info_nce_reference

torch.set_num_threads(1)
IMPLEMENTATIONS = [info_nce, info_nce_reference]


@pytest.mark.parametrize("batch", [2, 5, 16])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("loss_fn", IMPLEMENTATIONS)
def test_identical_embeddings_give_log_b(batch: int, symmetric: bool, loss_fn: Callable[..., torch.Tensor]) -> None:
    # every logit is equal, so each row is a uniform softmax over B columns: -log(1/B) = log(B)
    x = torch.ones(batch, 8)
    ids = torch.arange(batch)
    for kwargs in ({}, {"anchor_ids": ids, "positive_ids": ids + batch}):
        got = loss_fn(x, x.clone(), temperature=0.3, symmetric=symmetric, **kwargs)
        assert float(got) == pytest.approx(math.log(batch), rel=1e-6)


@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0])
@pytest.mark.parametrize("loss_fn", IMPLEMENTATIONS)
def test_orthonormal_embeddings_match_formula(tau: float, loss_fn: Callable[..., torch.Tensor]) -> None:
    # a_i = b_i = e_i: diagonal logit 1/tau, off-diagonal 0 -> loss = log(1 + (B - 1) exp(-1/tau))
    batch = 6
    e = torch.eye(batch, 10, dtype=torch.float64)  # float64: the tau = 0.05 value is ~1e-8
    expected = math.log(1 + (batch - 1) * math.exp(-1 / tau))
    assert float(loss_fn(e, e.clone(), temperature=tau)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss_fn", IMPLEMENTATIONS)
def test_duplicates_are_masked_from_negatives(loss_fn: Callable[..., torch.Tensor]) -> None:
    # rows 0 and 1 are the same pair (item 7 -> item 9), row 2 is another. Masking leaves row 0 with
    # columns {0, 2}: log(1 + exp(-1/tau)); row 2 keeps all three: log(1 + 2 exp(-1/tau)).
    tau = 0.2
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ids_a, ids_b = torch.tensor([7, 7, 3]), torch.tensor([9, 9, 4])
    expected = (2 * math.log(1 + math.exp(-1 / tau)) + math.log(1 + 2 * math.exp(-1 / tau))) / 3
    got = loss_fn(a, a.clone(), temperature=tau, anchor_ids=ids_a, positive_ids=ids_b)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    unmasked = loss_fn(a, a.clone(), temperature=tau)
    assert float(unmasked) > float(got)


def test_duplicate_mask_marks_anchor_and_positive_repeats() -> None:
    anchors, positives = torch.tensor([1, 2, 3]), torch.tensor([2, 5, 5])
    m = duplicate_mask(anchors, positives)
    # row 0 (anchor 1, positive 2): no column holds 2 besides itself, none holds 1 -> nothing masked
    # row 1 (anchor 2, positive 5): column 0 holds its anchor 2, column 2 its positive 5 -> both masked
    # row 2 (anchor 3, positive 5): column 1 holds 5 -> masked
    assert m.tolist() == [[False, False, False], [True, False, True], [False, True, False]]


@pytest.mark.parametrize("loss_fn", IMPLEMENTATIONS)
def test_gradients_are_finite_with_masking(loss_fn: Callable[..., torch.Tensor]) -> None:
    a = torch.randn(8, 4, requires_grad=True)
    b = torch.randn(8, 4, requires_grad=True)
    ids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss_fn(a, b, anchor_ids=ids, positive_ids=ids + 10).backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


@pytest.mark.parametrize("loss_fn", IMPLEMENTATIONS)
def test_bad_inputs_raise(loss_fn: Callable[..., torch.Tensor]) -> None:
    with pytest.raises(QarmError, match="anchors and positives"):
        loss_fn(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(QarmError, match="temperature"):
        loss_fn(torch.zeros(3, 4), torch.zeros(3, 4), temperature=0.0)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("loss_fn", IMPLEMENTATIONS)
def test_constant_log_q_changes_nothing(symmetric: bool, loss_fn: Callable[..., torch.Tensor]) -> None:
    # a softmax is shift-invariant: the same correction on every column leaves every row's loss unchanged
    torch.manual_seed(0)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    c = torch.full((5,), -3.0)
    plain = loss_fn(a, b, temperature=0.2, symmetric=symmetric)
    corrected = loss_fn(a, b, temperature=0.2, symmetric=symmetric, anchor_log_q=c, positive_log_q=c)
    assert float(corrected) == pytest.approx(float(plain), rel=1e-6)


@pytest.mark.parametrize("loss_fn", IMPLEMENTATIONS)
def test_log_q_correction_by_hand(loss_fn: Callable[..., torch.Tensor]) -> None:
    # a_i = b_i = e_i (B = 2): logits [[1/t, 0], [0, 1/t]]. Column 1's item is popular: log q = [0, c].
    # row 0: [1/t, -c] -> log(1 + exp(-c - 1/t)); row 1: [0, 1/t - c] -> log(1 + exp(c - 1/t))
    t, c = 0.5, 1.5
    e = torch.eye(2, dtype=torch.float64)
    got = loss_fn(e, e.clone(), temperature=t, symmetric=False, positive_log_q=torch.tensor([0.0, c]))
    expected = (math.log(1 + math.exp(-c - 1 / t)) + math.log(1 + math.exp(c - 1 / t))) / 2
    assert float(got) == pytest.approx(expected, rel=1e-9)
    # the backward direction's columns are the anchors: the same correction given as anchor_log_q
    both = loss_fn(e, e.clone(), temperature=t, anchor_log_q=torch.tensor([0.0, c]),
                   positive_log_q=torch.tensor([0.0, c]))
    assert float(both) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(QarmError, match="positive_log_q"):
        loss_fn(e, e.clone(), positive_log_q=torch.zeros(3))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_duplicate_entries_are_the_mask_plus_the_diagonal(data: st.DataObject) -> None:
    b = data.draw(st.integers(1, 12))
    ids = st.lists(st.integers(-1, 4), min_size=b, max_size=b)
    anchor_ids, positive_ids = torch.tensor(data.draw(ids)), torch.tensor(data.draw(ids))
    dense = torch.zeros(b * b, dtype=torch.bool)
    dense[duplicate_entries(anchor_ids, positive_ids)] = True
    expected = duplicate_mask(anchor_ids, positive_ids) | torch.eye(b, dtype=torch.bool)
    assert torch.equal(dense.view(b, b), expected)


def _case(batch: int, ids: str, log_q: bool, dtype: torch.dtype = torch.float64,
          seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Anchors, positives (B, 8) and the optional arguments: ids "none", "dup" (anchor and positive ids drawn from
    0..B/3, so many repeats) or "pad" (anchors all -1, the U2I call); log_q: both corrections, requiring grad."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, 8, generator=g, dtype=dtype, requires_grad=True)
    p = torch.randn(batch, 8, generator=g, dtype=dtype, requires_grad=True)
    kw: dict[str, torch.Tensor] = {}
    if ids != "none":
        pos = torch.randint(0, max(batch // 3, 1), (batch,), generator=g)
        anc = torch.full((batch,), -1) if ids == "pad" else torch.randint(0, max(batch // 3, 1), (batch,), generator=g)
        kw |= {"anchor_ids": anc, "positive_ids": pos}
    if log_q:
        for name in ("anchor_log_q", "positive_log_q"):
            kw[name] = (2 * torch.randn(batch, generator=g, dtype=dtype)).requires_grad_()
    return a, p, kw


def _loss_and_grads(loss_fn: Callable[..., torch.Tensor], a: torch.Tensor, p: torch.Tensor,
                    kw: dict[str, torch.Tensor], **options: object) -> list[torch.Tensor | None]:
    """[loss, d/d anchors, d/d positives, d/d each log_q given] (None where a log_q does not reach the loss)."""
    wrt = [a, p, *(kw[k] for k in ("anchor_log_q", "positive_log_q") if k in kw)]
    loss = loss_fn(a, p, **kw, **options)
    return [loss.detach(), *torch.autograd.grad(loss, wrt, allow_unused=True)]


def _assert_same(got: list[torch.Tensor | None], want: list[torch.Tensor | None], tol: float) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if g is not None:
            torch.testing.assert_close(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("batch", [2, 3, 64])
@pytest.mark.parametrize("ids", ["none", "dup", "pad"])
@pytest.mark.parametrize("log_q", [False, True])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
def test_fused_matches_reference_float64(batch: int, ids: str, log_q: bool, symmetric: bool, normalize: bool) -> None:
    a, p, kw = _case(batch, ids, log_q)
    options = {"temperature": 0.2, "symmetric": symmetric, "normalize": normalize}
    _assert_same(_loss_and_grads(info_nce, a, p, kw, **options),
                 _loss_and_grads(info_nce_reference, a, p, kw, **options), 1e-10)


@pytest.mark.parametrize("symmetric", [True, False])
def test_fused_matches_reference_with_fully_masked_rows(symmetric: bool) -> None:
    # row 0 (anchor 3, positive 7): columns 1 and 2 hold 7, column 3 holds 3 -> every off-diagonal column
    # masked, so its softmax is one-hot on the diagonal: loss 0 from that row, in both directions
    a, p, _ = _case(4, "none", False)
    kw = {"anchor_ids": torch.tensor([3, 7, 3, 1]), "positive_ids": torch.tensor([7, 7, 7, 3])}
    options = {"temperature": 0.2, "symmetric": symmetric}
    _assert_same(_loss_and_grads(info_nce, a, p, kw, **options),
                 _loss_and_grads(info_nce_reference, a, p, kw, **options), 1e-10)
    # every row fully masked (one item everywhere): the loss is exactly 0 and so are the gradients
    same = {"anchor_ids": torch.full((4,), 5), "positive_ids": torch.full((4,), 5)}
    loss, ga, gp = _loss_and_grads(info_nce, a, p, same, **options)
    assert float(loss) == 0.0 and not ga.any() and not gp.any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_matches_reference_when_the_positive_probability_underflows(dtype: torch.dtype) -> None:
    # unnormalised, tau = 0.01: row 0's own logit is -2500 and column 1's +2500, so p_00 = exp(-5000) is 0 in
    # either dtype and the row's loss (5000) must come from its log-sum-exp, as the reference computes it
    a = torch.tensor([[5.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=dtype, requires_grad=True)
    p = torch.tensor([[-5.0, 0.0], [5.0, 0.0], [0.0, 1.0]], dtype=dtype, requires_grad=True)
    kw = {"positive_log_q": torch.tensor([0.0, 1.0, 2.0], dtype=dtype, requires_grad=True)}
    options = {"temperature": 0.01, "normalize": False}
    got = _loss_and_grads(info_nce, a, p, kw, **options)
    assert float(got[0]) > 1000
    _assert_same(got, _loss_and_grads(info_nce_reference, a, p, kw, **options),
                 1e-6 if dtype == torch.float32 else 1e-10)


@pytest.mark.parametrize("pattern", ["align", "u2i"])
def test_fused_matches_reference_float32_at_batch_512(pattern: str) -> None:
    a, p, kw = _case(512, "dup" if pattern == "align" else "pad", pattern == "align", torch.float32, seed=1)
    options = ({"temperature": 0.07} if pattern == "align"
               else {"temperature": 0.1, "symmetric": False, "normalize": False})
    if pattern == "u2i":  # the two towers emit unit vectors
        a, p = (torch.nn.functional.normalize(x.detach(), dim=-1).requires_grad_() for x in (a, p))
    got = _loss_and_grads(info_nce, a, p, kw, **options)
    want = _loss_and_grads(info_nce_reference, a, p, kw, **options)
    torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=0)
    for g, w in zip(got[1:], want[1:]):  # gradients relative to their own scale (about 1 / (B tau))
        torch.testing.assert_close(g, w, rtol=0, atol=1e-5 * float(w.abs().max()))


def test_fused_gradcheck() -> None:
    a, p, kw = _case(5, "dup", True, seed=2)
    ids = {k: v for k, v in kw.items() if k.endswith("_ids")}

    def loss(a: torch.Tensor, p: torch.Tensor, aq: torch.Tensor, pq: torch.Tensor) -> torch.Tensor:
        return info_nce(a, p, temperature=0.3, anchor_log_q=aq, positive_log_q=pq, **ids)

    assert torch.autograd.gradcheck(loss, (a, p, kw["anchor_log_q"], kw["positive_log_q"]))


def test_fused_without_grad_gives_the_same_loss() -> None:
    a, p, kw = _case(16, "dup", True)
    with_grad = info_nce(a, p, **kw)
    with torch.no_grad():  # the value-only path: no gradient GEMMs
        assert info_nce(a, p, **kw).item() == pytest.approx(with_grad.item(), rel=1e-12)
    plain = {k: v.detach() for k, v in kw.items()}
    assert info_nce(a.detach(), p.detach(), **plain).item() == pytest.approx(with_grad.item(), rel=1e-12)
