"""Code coverage by seen items and the seen-prefix fallback, by hand; relational checks on random codes."""

from __future__ import annotations

import numpy as np
import pytest

from qarm.errors import QarmError
from qarm.quantize import code_coverage, fallback_to_seen_prefix, seen_mask

# items 0, 1 seen; 2 shares 0's first level only; 3 shares no prefix but its deeper values are used by 0 / 1
CODES = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 2], [1, 1, 2]])
SEEN = np.array([True, True, False, False])


def test_seen_mask_by_row_and_prefix() -> None:
    assert seen_mask(CODES, SEEN, "prefix").tolist() == [[1, 1, 1], [1, 1, 1], [1, 0, 0], [0, 0, 0]]
    # by row: item 2's level-1 value 2 is used by no seen item; level-2 value 2 is (item 0)
    assert seen_mask(CODES, SEEN, "row").tolist() == [[1, 1, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1]]
    # min_count 2: only prefix (0,) and (0, 1) hold two seen items
    assert seen_mask(CODES, SEEN, "prefix", min_count=2).tolist() == [[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]]


def test_fallback_truncates_to_the_seen_prefix() -> None:
    assert fallback_to_seen_prefix(CODES, SEEN, 4).tolist() == [[0, 1, 2], [0, 1, 3], [0, 4, 4], [4, 4, 4]]
    # by row, item 3's deeper values are seen but its first level is not: the prefix property cuts it all
    assert fallback_to_seen_prefix(CODES, SEEN, 4, by="row").tolist() == [[0, 1, 2], [0, 1, 3], [0, 4, 4], [4, 4, 4]]
    cov = code_coverage(CODES, SEEN, ~SEEN)
    assert cov.n_items == 2 and cov.prefix_seen == (0.5, 0.0, 0.0) and cov.row_seen == (0.5, 0.5, 1.0)
    with pytest.raises(QarmError, match="codebook_size"):
        fallback_to_seen_prefix(CODES, SEEN, 3)
    with pytest.raises(QarmError, match="bool"):
        fallback_to_seen_prefix(CODES, SEEN.astype(int), 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fallback_relations_on_random_codes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, size=(200, 3))
    seen = rng.random(200) < 0.6
    out = fallback_to_seen_prefix(codes, seen, 4)
    assert np.array_equal(out[seen], codes[seen])  # a seen item's own code is seen by itself
    kept = out < 4
    assert (kept[:, 1:] <= kept[:, :-1]).all()  # a prefix: once unseen, unseen below
    assert np.array_equal(out[kept], codes[kept])
    # the coverage shares never grow with depth for prefixes, and row coverage bounds prefix coverage
    cov = code_coverage(codes, seen, ~seen)
    assert all(x >= y for x, y in zip(cov.prefix_seen, cov.prefix_seen[1:]))
    assert all(r >= p for r, p in zip(cov.row_seen, cov.prefix_seen))
    assert cov.prefix_seen == tuple(kept[~seen].mean(0))
