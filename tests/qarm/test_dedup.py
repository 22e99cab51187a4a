"""TIGER's dedup suffix: hand example, uniqueness, order by item_idx."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qarm.errors import QarmError
from qarm.quantize import add_dedup_level, dedup_vocab_size


def test_hand_example() -> None:
    codes = np.array([[12, 24, 52], [3, 1, 0], [12, 24, 52], [12, 24, 5], [12, 24, 52]])
    out = add_dedup_level(codes)
    # Items 0, 2, 4 share (12, 24, 52): ranks 0, 1, 2 in item_idx order (TIGER: (12,24,52,0), (12,24,52,1)).
    assert out.tolist() == [[12, 24, 52, 0], [3, 1, 0, 0], [12, 24, 52, 1], [12, 24, 5, 0], [12, 24, 52, 2]]
    assert out.dtype == np.int64 and dedup_vocab_size(out) == 3


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 80), levels=st.integers(1, 3), k=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_every_code_unique_and_suffix_is_rank(n: int, levels: int, k: int, seed: int) -> None:
    codes = np.random.default_rng(seed).integers(0, k, size=(n, levels))
    out = add_dedup_level(codes)
    np.testing.assert_array_equal(out[:, :levels], codes)
    assert len({tuple(r) for r in out.tolist()}) == n
    for i in range(n):  # slow definition: number of earlier items with the same code
        assert out[i, -1] == int((codes[:i] == codes[i]).all(1).sum())


def test_bad_codes_raise() -> None:
    with pytest.raises(QarmError, match=r"\(N, L\)"):
        add_dedup_level(np.array([1, 2, 3]))
    with pytest.raises(QarmError, match="integers"):
        add_dedup_level(np.array([[0.5]]))
