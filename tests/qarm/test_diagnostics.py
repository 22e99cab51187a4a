"""Code diagnostics on a hand-computed example; JSON-safe keys; edge sizes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from qarm.diagnostics import CodeDiagnostics, code_diagnostics
from qarm.errors import QarmError
from qarm.quantize import add_dedup_level, dedup_vocab_size

# Items 0,1 point along e1, items 2,3 along e2: each item's inner-product nearest neighbour is its pair.
X = np.array([[1.0, 0.0], [0.9, 0.0], [0.0, 1.0], [0.0, 0.9]], dtype=np.float32)
CODES = np.array([[0, 0], [0, 1], [1, 0], [1, 0]])
BOOKS = np.zeros((2, 4, 2), dtype=np.float32)
BOOKS[0, 0], BOOKS[0, 1], BOOKS[1, 1] = [1.0, 0.0], [0.0, 1.0], [-0.1, 0.0]


def test_hand_computed_example() -> None:
    d = code_diagnostics(X, CODES, codebook_size=4, codebooks=BOOKS, neighbours_k=1)
    assert d.n_items == 4 and d.n_levels == 2
    assert d.n_unique_codes == 3 and d.max_items_per_code == 2
    assert d.mean_items_per_code == pytest.approx(4 / 3)
    assert d.collision_rate == pytest.approx(2 / 4)  # items 2 and 3 share (1, 0)
    assert d.unique_codes_by_depth == (2, 3)
    assert d.collision_rate_by_depth == pytest.approx([1.0, 0.5])
    assert d.utilisation == pytest.approx([2 / 4, 2 / 4])
    h2 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert d.perplexity == pytest.approx([2.0, math.exp(h2)])
    assert d.input_mse == pytest.approx((1 + 0.81 + 1 + 0.81) / 8)
    # After level 1 the residuals are 0, (-0.1, 0), 0, (0, -0.1); level 2 removes item 1's.
    assert d.reconstruction_mse == pytest.approx([0.02 / 8, 0.01 / 8], rel=1e-5)
    # Neighbours 0<->1 and 2<->3: both pairs share depth-1 prefixes; only 2,3 share the full code.
    assert d.neighbour_hr == pytest.approx([1.0, 0.5])
    assert d.hr_at_k == pytest.approx(1.0)
    assert d.neighbours_k == 1 and d.neighbour_queries == 4


def test_json_round_trip_and_mlflow_safe_keys() -> None:
    from benchmark.core.records import from_json, to_json

    d = code_diagnostics(X, CODES, codebook_size=4, codebooks=BOOKS)
    plain = to_json(d)
    json.dumps(plain)
    assert not any("@" in k for k in plain)
    assert from_json(CodeDiagnostics, json.loads(json.dumps(plain))) == d
    assert code_diagnostics(X, CODES, codebook_size=4).reconstruction_mse is None
    # neighbours_k=10 on 4 items: clamped to the 3 that exist.
    assert d.neighbours_k == 3 and len(d.neighbour_hr) == 2


def test_sampled_queries_and_per_level_sizes() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    codes = add_dedup_level(rng.integers(0, 3, size=(300, 2)))
    sizes = [3, 3, dedup_vocab_size(codes)]
    d = code_diagnostics(x, codes, codebook_size=sizes, neighbour_queries=50, seed=1)
    assert d.neighbour_queries == 50 and d.collision_rate == 0.0 and d.utilisation[2] == 1.0
    assert d.codebook_size == tuple(sizes)
    assert code_diagnostics(x, codes, codebook_size=None).codebook_size == tuple(sizes)


def test_single_item_has_no_neighbour_keys() -> None:
    d = code_diagnostics(X[:1], CODES[:1], codebook_size=4)
    assert d.collision_rate == 0.0 and d.n_unique_codes == 1
    assert d.neighbour_hr is None and d.hr_at_k is None


def test_bad_inputs_raise() -> None:
    with pytest.raises(QarmError, match=r"codes must be \(N=4, L\)"):
        code_diagnostics(X, CODES[:3], codebook_size=4)
    with pytest.raises(QarmError, match="does not cover"):
        code_diagnostics(X, CODES, codebook_size=1)
    with pytest.raises(QarmError, match="codebooks must be"):
        code_diagnostics(X, CODES, codebook_size=4, codebooks=BOOKS[:, :, :1])


def test_group_size_duplicate_floor_and_decoder_by_hand() -> None:
    d = code_diagnostics(X, CODES, codebook_size=4, codebooks=BOOKS)
    # full-code groups {0}, {1}, {2, 3}: items see groups of 1, 1, 2, 2 -> mean 1.5 (= (1 + 1 + 4) / 4)
    assert d.mean_code_group_size == pytest.approx(1.5) and d.mean_items_per_code == pytest.approx(4 / 3)
    assert d.duplicate_rate == 0.0
    dup = code_diagnostics(np.concatenate([X, X[:1]]), np.concatenate([CODES, CODES[:1]]), codebook_size=4)
    assert dup.duplicate_rate == pytest.approx(2 / 5)  # items 0 and 4 have the same embedding
    # A decoder gives the same per-level reconstruction errors as the codebooks it sums.
    def decode(prefix: np.ndarray) -> np.ndarray:
        return sum(BOOKS[level][prefix[:, level]] for level in range(prefix.shape[1]))
    via = code_diagnostics(X, CODES, codebook_size=4, decoder=decode)
    assert via.reconstruction_mse == pytest.approx(d.reconstruction_mse, rel=1e-6)
    with pytest.raises(QarmError, match="not both"):
        code_diagnostics(X, CODES, codebook_size=4, codebooks=BOOKS, decoder=decode)


def test_records_without_the_new_fields_still_load() -> None:
    from benchmark.core.records import from_json, to_json

    plain = to_json(code_diagnostics(X, CODES, codebook_size=4))
    del plain["mean_code_group_size"], plain["duplicate_rate"]
    back = from_json(CodeDiagnostics, plain)
    assert back.mean_code_group_size is None and back.duplicate_rate is None
