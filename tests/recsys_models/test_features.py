"""Feature specs -> TorchRec configs, and the KJT builders (hand-written expectations + per-row reference)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_models.errors import RecsysModelError
from recsys_models.features import (
    FeatureSet,
    FeatureSpec,
    ItemField,
    build_batch,
    build_dense,
    build_kjt,
    build_kjt_reference,
    embedding_bag_configs,
    item_bag_configs,
)

# 4 items, 3 users, 2 RQ levels (K = 3), a VQ bag of k = 2 (sharing the item table), genres as a bag (-1 = pad),
# one user feature with 2 categories.
CODES = torch.tensor([[0, 1], [2, 2], [1, 0], [0, 2]])
VQ = torch.tensor([[1, 2], [0, 3], [3, 1], [2, 0]])
GENRES = torch.tensor([[0, -1], [1, 2], [-1, -1], [2, -1]])
USER_TABLE = torch.tensor([[1], [0], [1]])


def _full_fs(dense: bool = False) -> FeatureSet:
    fields = (ItemField("item", "t_item", 4), ItemField("rq_0", "t_rq_0", 3), ItemField("rq_1", "t_rq_1", 3),
              ItemField("vq", "t_item", 4, 2), ItemField("genres", "t_genres", 3, 2))
    tokens = {"item": torch.arange(4)[:, None], "rq_0": CODES[:, :1], "rq_1": CODES[:, 1:], "vq": VQ,
              "genres": GENRES}
    spec = FeatureSpec(n_items=4, n_users=3, embedding_dim=4, user_features=(("gender", 2),), item_fields=fields,
                       dense_dim=2 if dense else 0)
    content = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [4.0, 0.0]]) if dense else None
    return FeatureSet(spec=spec, item_tokens=tokens, user_table=USER_TABLE, content=content)


ARGS = (torch.tensor([2, 0]), torch.tensor([1, 2]), torch.tensor([[3, 0], [0, 0]]), torch.tensor([2, 0]))


def test_pooled_kjt_by_hand() -> None:
    # row 0: user 2, item 1, history [3, 0] (oldest first); row 1: user 0, item 2, empty history
    kjt = build_kjt(_full_fs(), *ARGS)
    assert kjt.keys() == ["user_idx", "user_gender", "item", "hist_item", "rq_0", "hist_rq_0", "rq_1", "hist_rq_1",
                          "vq", "hist_vq", "genres", "hist_genres"]
    expected = {
        "user_idx": ([2, 0], [1, 1]),
        "user_gender": ([1, 1], [1, 1]),  # USER_TABLE[2] = 1, USER_TABLE[0] = 1
        "item": ([1, 2], [1, 1]),
        "hist_item": ([3, 0], [2, 0]),
        "rq_0": ([2, 1], [1, 1]),  # CODES[1, 0], CODES[2, 0]
        "hist_rq_0": ([0, 0], [2, 0]),  # CODES[3, 0], CODES[0, 0]
        "rq_1": ([2, 0], [1, 1]),
        "hist_rq_1": ([2, 1], [2, 0]),  # CODES[3, 1], CODES[0, 1]
        "vq": ([0, 3, 3, 1], [2, 2]),  # VQ[1], VQ[2]
        "hist_vq": ([2, 0, 1, 2], [4, 0]),  # VQ[3] then VQ[0]
        "genres": ([1, 2], [2, 0]),  # GENRES[1] = [1, 2]; item 2 has no genre
        "hist_genres": ([2, 0], [2, 0]),  # GENRES[3] = [2], GENRES[0] = [0]
    }
    d = kjt.to_dict()
    for key, (values, lengths) in expected.items():
        assert d[key].values().tolist() == values, key
        assert d[key].lengths().tolist() == lengths, key


def test_full_fields_are_those_without_padding() -> None:
    assert _full_fs().full_fields == {"item", "rq_0", "rq_1", "vq"}  # genres has -1


def test_reference_by_hand_matches() -> None:
    ref = build_kjt_reference(_full_fs(), [(2, 1, [3, 0]), (0, 2, [])])
    fast = build_kjt(_full_fs(), *ARGS)
    assert ref.keys() == fast.keys()
    assert torch.equal(ref.values(), fast.values()) and torch.equal(ref.lengths(), fast.lengths())


def test_sequence_layout_by_hand() -> None:
    batch = build_batch(_full_fs(), *ARGS, torch.tensor([1.0, 0.0]), layout="sequence")
    assert batch.sparse.keys() == ["user_idx", "user_gender"]  # context only
    assert batch.unique_items.tolist() == [0, 1, 2, 3]  # the target items 1, 2 and the history items 3, 0
    assert batch.target_pos.tolist() == [1, 2] and batch.hist_pos.tolist() == [[3, 0], [0, 0]]
    d = batch.items.to_dict()
    assert d["vq"].values().tolist() == VQ.flatten().tolist() and d["vq"].lengths().tolist() == [2, 2, 2, 2]
    assert d["genres"].values().tolist() == [0, 1, 2, 2] and d["genres"].lengths().tolist() == [1, 2, 0, 1]


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 6), t=st.integers(1, 5), levels=st.integers(0, 3), bag=st.integers(0, 3),
       item_id=st.booleans(), seed=st.integers(0, 10_000), padded=st.booleans())
def test_vectorised_equals_reference(b: int, t: int, levels: int, bag: int, item_id: bool, seed: int,
                                     padded: bool) -> None:
    """build_kjt against the per-row reference; the bag field with padding (the masked path) or without any
    (FeatureSet.full_fields: the unmasked path)."""
    if not item_id and levels == 0 and bag == 0:
        levels = 1
    g = torch.Generator().manual_seed(seed)
    n, u, k = 7, 5, 4
    fields, tokens = [], {}
    if item_id:
        fields.append(ItemField("item", "t_item", n))
        tokens["item"] = torch.arange(n)[:, None]
    for lv in range(levels):
        fields.append(ItemField(f"rq_{lv}", f"t_rq_{lv}", k))
        tokens[f"rq_{lv}"] = torch.randint(0, k, (n, 1), generator=g)
    if bag:
        fields.append(ItemField("bag", "t_bag", k, bag))
        toks = torch.randint(0, k, (n, bag), generator=g)
        pad = torch.rand(n, bag, generator=g) < 0.3
        pad[0, 0] = padded  # at least one padding token, or none at all
        tokens["bag"] = torch.where(pad if padded else torch.zeros_like(pad), -1, toks)  # ragged bags, some empty
    spec = FeatureSpec(n_items=n, n_users=u, user_features=(("a", 3), ("b", 2)), item_fields=tuple(fields))
    fs = FeatureSet(spec=spec, item_tokens=tokens, user_table=torch.stack(
        [torch.randint(0, 3, (u,), generator=g), torch.randint(0, 2, (u,), generator=g)], 1))
    users, items = torch.randint(0, u, (b,), generator=g), torch.randint(0, n, (b,), generator=g)
    hist_len = torch.randint(0, t + 1, (b,), generator=g)
    hist = torch.randint(0, n, (b, t), generator=g) * (torch.arange(t)[None] < hist_len[:, None])
    rows = [(int(users[i]), int(items[i]), hist[i, : hist_len[i]].tolist()) for i in range(b)]
    assert ("bag" in fs.full_fields) == (bag > 0 and not padded)
    assert {"item", *(f"rq_{lv}" for lv in range(levels))} & set(tokens) <= fs.full_fields
    fast, ref = build_kjt(fs, users, items, hist, hist_len), build_kjt_reference(fs, rows)
    assert fast.keys() == ref.keys()
    assert torch.equal(fast.values(), ref.values()) and torch.equal(fast.lengths(), ref.lengths())


def test_dense_by_hand() -> None:
    fs = _full_fs(dense=True)
    dense = build_dense(fs, torch.tensor([1, 0]), torch.tensor([[2, 3], [0, 0]]), torch.tensor([2, 0]))
    # row 0: [1, content[1], mean(content[2], content[3])] = [1, 0, 1, 3, 1]; row 1: empty history -> zeros
    assert dense.tolist() == [[1.0, 0.0, 1.0, 3.0, 1.0], [1.0, 1.0, 0.0, 0.0, 0.0]]


def test_tables_shared_by_target_history_and_the_vq_bag() -> None:
    spec = _full_fs().spec
    by_name = {c.name: c for c in embedding_bag_configs(spec)}
    assert by_name["t_item"].feature_names == ["item", "hist_item", "vq", "hist_vq"]  # VQ tokens are item ids
    assert by_name["t_rq_1"].feature_names == ["rq_1", "hist_rq_1"] and by_name["t_rq_1"].num_embeddings == 3
    assert [c.name for c in item_bag_configs(spec, "sequence")] == ["t_item", "t_rq_0", "t_rq_1", "t_genres"]
    assert spec.embedding_parameters() == (3 + 2 + 4 + 3 + 3 + 3) * 4  # user, gender, item, rq_0, rq_1, genres


def test_codes_only_spec_has_no_item_table() -> None:
    spec = FeatureSpec(n_items=4, n_users=3, item_fields=(ItemField("rq_0", "t_rq_0", 3),))
    names = [c.name for c in embedding_bag_configs(spec)]
    assert "t_item" not in names and "item" not in spec.kjt_keys() and not spec.has_item_id


def test_spec_and_featureset_reject_bad_input() -> None:
    with pytest.raises(RecsysModelError, match="at least one sparse feature"):
        FeatureSpec(n_items=4, n_users=3)
    with pytest.raises(RecsysModelError, match="table 't_item' has 4 rows for one field and 5"):
        FeatureSpec(n_items=4, n_users=3, item_fields=(ItemField("item", "t_item", 4), ItemField("vq", "t_item", 5)))
    spec = FeatureSpec(n_items=4, n_users=3, item_fields=(ItemField("rq_0", "t_rq_0", 3),))
    with pytest.raises(RecsysModelError, match=r"values must lie in \[0, 3\)"):
        FeatureSet(spec=spec, item_tokens={"rq_0": torch.full((4, 1), 3)})
    with pytest.raises(RecsysModelError, match="expected one array per item field"):
        FeatureSet(spec=spec, item_tokens={})
    with pytest.raises(RecsysModelError, match="shape"):
        FeatureSet(spec=spec, item_tokens={"rq_0": torch.zeros(4, 2, dtype=torch.int64)})
