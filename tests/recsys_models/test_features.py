"""Feature specs -> TorchRec configs, and the KJT builders (hand-written expectations + reference)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_models.errors import RecsysModelError
from recsys_models.features import (
    FeatureSet,
    FeatureSpec,
    build_dense,
    build_kjt,
    build_kjt_reference,
    embedding_bag_configs,
    sequence_configs,
)

# 4 items, 3 users, 2 RQ levels (K = 3), VQ k = 2, one user feature with 2 categories.
CODES = torch.tensor([[0, 1], [2, 2], [1, 0], [0, 2]])
VQ = torch.tensor([[1, 2], [0, 3], [3, 1], [2, 0]])
USER_TABLE = torch.tensor([[1], [0], [1]])


def _full_fs(dense: bool = False) -> FeatureSet:
    spec = FeatureSpec(n_items=4, n_users=3, embedding_dim=4, user_features=(("gender", 2),), rq_levels=2,
                       rq_codebook_size=3, vq_k=2, dense_dim=2 if dense else 0)
    content = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [4.0, 0.0]]) if dense else None
    return FeatureSet(spec=spec, user_table=USER_TABLE, codes=CODES, vq_codes=VQ, content=content)


def test_kjt_by_hand() -> None:
    fs = _full_fs()
    # row 0: user 2, item 1, history [3, 0] (oldest first); row 1: user 0, item 2, empty history
    kjt = build_kjt(fs, torch.tensor([2, 0]), torch.tensor([1, 2]), torch.tensor([[3, 0], [0, 0]]), torch.tensor([2, 0]))
    assert kjt.keys() == ["user_idx", "user_gender", "vq", "item_idx", "hist_item_idx", "rq_0", "hist_rq_0",
                          "rq_1", "hist_rq_1"]
    d = kjt.to_dict()
    expected = {
        "user_idx": ([2, 0], [1, 1]),
        "user_gender": ([1, 1], [1, 1]),  # USER_TABLE[2] = 1, USER_TABLE[0] = 1
        "vq": ([0, 3, 3, 1], [2, 2]),  # VQ[1], VQ[2]
        "item_idx": ([1, 2], [1, 1]),
        "hist_item_idx": ([3, 0], [2, 0]),
        "rq_0": ([2, 1], [1, 1]),  # CODES[1, 0], CODES[2, 0]
        "hist_rq_0": ([0, 0], [2, 0]),  # CODES[3, 0], CODES[0, 0]
        "rq_1": ([2, 0], [1, 1]),
        "hist_rq_1": ([2, 1], [2, 0]),  # CODES[3, 1], CODES[0, 1]
    }
    for key, (values, lengths) in expected.items():
        assert d[key].values().tolist() == values, key
        assert d[key].lengths().tolist() == lengths, key


def test_reference_by_hand_matches() -> None:
    fs = _full_fs()
    ref = build_kjt_reference(fs, [(2, 1, [3, 0]), (0, 2, [])])
    fast = build_kjt(fs, torch.tensor([2, 0]), torch.tensor([1, 2]), torch.tensor([[3, 0], [0, 0]]), torch.tensor([2, 0]))
    assert ref.keys() == fast.keys()
    assert torch.equal(ref.values(), fast.values()) and torch.equal(ref.lengths(), fast.lengths())


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 6), t=st.integers(1, 5), levels=st.integers(0, 3), vq_k=st.integers(0, 3),
    item_id=st.booleans(), seed=st.integers(0, 10_000),
)
def test_vectorised_equals_reference(b: int, t: int, levels: int, vq_k: int, item_id: bool, seed: int) -> None:
    if not item_id and levels == 0:
        levels = 1
    g = torch.Generator().manual_seed(seed)
    n, u, k = 7, 5, 4
    spec = FeatureSpec(n_items=n, n_users=u, item_id=item_id, user_features=(("a", 3), ("b", 2)), rq_levels=levels,
                       rq_codebook_size=k if levels else 0, vq_k=vq_k)
    fs = FeatureSet(
        spec=spec,
        user_table=torch.stack([torch.randint(0, 3, (u,), generator=g), torch.randint(0, 2, (u,), generator=g)], 1),
        codes=torch.randint(0, k, (n, levels), generator=g) if levels else None,
        vq_codes=torch.randint(0, n, (n, vq_k), generator=g) if vq_k else None,
    )
    users, items = torch.randint(0, u, (b,), generator=g), torch.randint(0, n, (b,), generator=g)
    hist_len = torch.randint(0, t + 1, (b,), generator=g)
    hist = torch.randint(0, n, (b, t), generator=g) * (torch.arange(t)[None] < hist_len[:, None])
    rows = [(int(users[i]), int(items[i]), hist[i, : hist_len[i]].tolist()) for i in range(b)]
    fast, ref = build_kjt(fs, users, items, hist, hist_len), build_kjt_reference(fs, rows)
    assert fast.keys() == ref.keys()
    assert torch.equal(fast.values(), ref.values()) and torch.equal(fast.lengths(), ref.lengths())


def test_dense_by_hand() -> None:
    fs = _full_fs(dense=True)
    dense = build_dense(fs, torch.tensor([1, 0]), torch.tensor([[2, 3], [0, 0]]), torch.tensor([2, 0]))
    # row 0: [1, content[1], mean(content[2], content[3])] = [1, 0, 1, 3, 1]; row 1: empty history -> zeros
    assert dense.tolist() == [[1.0, 0.0, 1.0, 3.0, 1.0], [1.0, 1.0, 0.0, 0.0, 0.0]]


def test_tables_shared_by_target_and_history() -> None:
    spec = _full_fs().spec
    by_name = {c.name: c for c in embedding_bag_configs(spec)}
    assert by_name["t_item"].feature_names == ["item_idx", "hist_item_idx"]
    assert by_name["t_rq_1"].feature_names == ["rq_1", "hist_rq_1"] and by_name["t_rq_1"].num_embeddings == 3
    assert by_name["t_vq"].num_embeddings == 4  # VQ codes are item indices: N rows
    assert [c.name for c in sequence_configs(spec)] == ["t_item", "t_rq_0", "t_rq_1"]


def test_codes_only_spec_has_no_item_table() -> None:
    spec = FeatureSpec(n_items=4, n_users=3, item_id=False, rq_levels=2, rq_codebook_size=3)
    names = [c.name for c in embedding_bag_configs(spec)]
    assert "t_item" not in names and "item_idx" not in spec.kjt_keys()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"codes": None}, "codes: the spec needs it"),
        ({"codes": torch.tensor([[0, 1]] * 4)}, "values must lie in"),  # level values fine but ...
        ({"codes": torch.zeros(4, 3, dtype=torch.int64)}, "shape"),
        ({"vq_codes": torch.full((4, 2), 9)}, "item indices"),
    ],
)
def test_featureset_rejects_bad_arrays(kwargs: dict, match: str) -> None:
    spec = FeatureSpec(n_items=4, n_users=3, rq_levels=2, rq_codebook_size=1, vq_k=2)
    base = {"codes": torch.zeros(4, 2, dtype=torch.int64), "vq_codes": VQ}
    with pytest.raises(RecsysModelError, match=match):
        FeatureSet(spec=spec, **{**base, **kwargs})


def test_spec_rejects_codes_only_without_codes() -> None:
    with pytest.raises(RecsysModelError, match="rq_levels=0"):
        FeatureSpec(n_items=4, n_users=3, item_id=False)
