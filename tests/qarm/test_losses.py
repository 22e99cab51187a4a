"""InfoNCE: values from the closed form, duplicate masking, input checks."""

from __future__ import annotations

import math

import pytest
import torch

from qarm.errors import QarmError
from qarm.losses import duplicate_mask, info_nce


@pytest.mark.parametrize("batch", [2, 5, 16])
@pytest.mark.parametrize("symmetric", [True, False])
def test_identical_embeddings_give_log_b(batch: int, symmetric: bool) -> None:
    # every logit is equal, so each row is a uniform softmax over B columns: -log(1/B) = log(B)
    x = torch.ones(batch, 8)
    ids = torch.arange(batch)
    for kwargs in ({}, {"anchor_ids": ids, "positive_ids": ids + batch}):
        got = info_nce(x, x.clone(), temperature=0.3, symmetric=symmetric, **kwargs)
        assert float(got) == pytest.approx(math.log(batch), rel=1e-6)


@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0])
def test_orthonormal_embeddings_match_formula(tau: float) -> None:
    # a_i = b_i = e_i: diagonal logit 1/tau, off-diagonal 0 -> loss = log(1 + (B - 1) exp(-1/tau))
    batch = 6
    e = torch.eye(batch, 10, dtype=torch.float64)  # float64: the tau = 0.05 value is ~1e-8
    expected = math.log(1 + (batch - 1) * math.exp(-1 / tau))
    assert float(info_nce(e, e.clone(), temperature=tau)) == pytest.approx(expected, rel=1e-5)


def test_duplicates_are_masked_from_negatives() -> None:
    # rows 0 and 1 are the same pair (item 7 -> item 9), row 2 is another. Masking leaves row 0 with
    # columns {0, 2}: log(1 + exp(-1/tau)); row 2 keeps all three: log(1 + 2 exp(-1/tau)).
    tau = 0.2
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ids_a, ids_b = torch.tensor([7, 7, 3]), torch.tensor([9, 9, 4])
    expected = (2 * math.log(1 + math.exp(-1 / tau)) + math.log(1 + 2 * math.exp(-1 / tau))) / 3
    got = info_nce(a, a.clone(), temperature=tau, anchor_ids=ids_a, positive_ids=ids_b)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    unmasked = info_nce(a, a.clone(), temperature=tau)
    assert float(unmasked) > float(got)


def test_duplicate_mask_marks_anchor_and_positive_repeats() -> None:
    anchors, positives = torch.tensor([1, 2, 3]), torch.tensor([2, 5, 5])
    m = duplicate_mask(anchors, positives)
    # row 0 (anchor 1, positive 2): no column holds 2 besides itself, none holds 1 -> nothing masked
    # row 1 (anchor 2, positive 5): column 0 holds its anchor 2, column 2 its positive 5 -> both masked
    # row 2 (anchor 3, positive 5): column 1 holds 5 -> masked
    assert m.tolist() == [[False, False, False], [True, False, True], [False, True, False]]


def test_gradients_are_finite_with_masking() -> None:
    a = torch.randn(8, 4, requires_grad=True)
    b = torch.randn(8, 4, requires_grad=True)
    ids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    info_nce(a, b, anchor_ids=ids, positive_ids=ids + 10).backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_bad_inputs_raise() -> None:
    with pytest.raises(QarmError, match="anchors and positives"):
        info_nce(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(QarmError, match="temperature"):
        info_nce(torch.zeros(3, 4), torch.zeros(3, 4), temperature=0.0)


@pytest.mark.parametrize("symmetric", [True, False])
def test_constant_log_q_changes_nothing(symmetric: bool) -> None:
    # a softmax is shift-invariant: the same correction on every column leaves every row's loss unchanged
    torch.manual_seed(0)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    c = torch.full((5,), -3.0)
    plain = info_nce(a, b, temperature=0.2, symmetric=symmetric)
    corrected = info_nce(a, b, temperature=0.2, symmetric=symmetric, anchor_log_q=c, positive_log_q=c)
    assert float(corrected) == pytest.approx(float(plain), rel=1e-6)


def test_log_q_correction_by_hand() -> None:
    # a_i = b_i = e_i (B = 2): logits [[1/t, 0], [0, 1/t]]. Column 1's item is popular: log q = [0, c].
    # row 0: [1/t, -c] -> log(1 + exp(-c - 1/t)); row 1: [0, 1/t - c] -> log(1 + exp(c - 1/t))
    t, c = 0.5, 1.5
    e = torch.eye(2, dtype=torch.float64)
    got = info_nce(e, e.clone(), temperature=t, symmetric=False, positive_log_q=torch.tensor([0.0, c]))
    expected = (math.log(1 + math.exp(-c - 1 / t)) + math.log(1 + math.exp(c - 1 / t))) / 2
    assert float(got) == pytest.approx(expected, rel=1e-9)
    # the backward direction's columns are the anchors: the same correction given as anchor_log_q
    both = info_nce(e, e.clone(), temperature=t, anchor_log_q=torch.tensor([0.0, c]),
                    positive_log_q=torch.tensor([0.0, c]))
    assert float(both) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(QarmError, match="positive_log_q"):
        info_nce(e, e.clone(), positive_log_q=torch.zeros(3))
