"""Variants -> feature sets (benchmark.cells.inputs.build_features), the controls, item metadata, the cell plan."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from benchmark.cells.inputs import build_features, control_codes, encode_item_fields, encode_user_features
from benchmark.cells.plan import plan_cell
from benchmark.config.suite import load_config
from benchmark.config.variants import BUILTIN_VARIANTS, get_variant
from benchmark.core.errors import ConfigError, DataError
from benchmark.itemside.stages import item_side_keys
from recsys_models.dlrm import build_dlrm
from recsys_models.features import embedding_bag_configs

N, U = 6, 3
CODES = np.array([[0, 1], [1, 1], [2, 0], [0, 0], [1, 2], [2, 2]], dtype=np.int64)
VQ = np.array([[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4]], dtype=np.int64)
DENSE = np.arange(N * 3, dtype=np.float32).reshape(N, 3)
META = {"year": np.array([[0], [1], [1], [-1], [0], [2]]), "genres": np.array([[0, 1], [1, -1]] * 3)}


def _features(variant: str):
    return build_features(variant, n_items=N, n_users=U, embedding_dim=4, codes=CODES, vq_codes=VQ, dense=DENSE,
                          item_fields=META)


@pytest.mark.parametrize("variant", BUILTIN_VARIANTS)
def test_every_variant_builds(variant: str) -> None:
    v = get_variant(variant)
    spec = _features(variant).spec
    names = [f.name for f in spec.item_fields]
    assert spec.has_item_id == v.item_id
    assert ("unigram_1" in names and "unigram_2" in names) == bool(v.codes)
    assert ("vq" in names) == bool(v.vq) and (spec.dense_dim == 3) == bool(v.dense)
    assert ("meta_year" in names and "meta_genres" in names) == v.metadata


def test_codes_only_has_no_item_id_table_and_vq_shares_it() -> None:
    fs = _features("codes_only")
    assert "t_item" not in [c.name for c in embedding_bag_configs(fs.spec)]
    assert not any("t_item" in name for name, _ in build_dlrm(fs.spec).named_parameters())
    vq = _features("aligned_codes_vq").spec
    assert {f.name: f.table for f in vq.item_fields}["vq"] == "t_item"  # neighbour ids are item ids
    # the VQ bag adds no parameters: the same rows as aligned_codes
    assert vq.embedding_parameters() == _features("aligned_codes").spec.embedding_parameters()


def test_unknown_variant_and_missing_arrays() -> None:
    with pytest.raises(ConfigError, match="unknown variant 'qarm'"):
        build_features("qarm", n_items=N, n_users=U)
    with pytest.raises(DataError, match="codes: variant 'aligned_codes' needs it"):
        build_features("aligned_codes", n_items=N, n_users=U)
    with pytest.raises(DataError, match="no categorical item fields"):
        build_features("metadata", n_items=N, n_users=U)


@pytest.mark.parametrize(("scheme", "tables"), [("unigram", ["unigram_1", "unigram_2"]),
                                                ("prefix_ngram", ["prefix_1", "prefix_2"]),
                                                ("bigram", ["bigram_1_2"]), ("spm", ["spm"])])
def test_code_tokenisations_become_item_fields(scheme: str, tables: list[str]) -> None:
    from qarm.quantize.config import TokenizeConfig

    fs = build_features("aligned_codes", n_items=N, n_users=U, codes=CODES, vocab_sizes=(3, 3),
                        tokenization=TokenizeConfig(scheme=scheme, spm_vocab_size=8), train_items=np.arange(N) < 4)
    assert [f.name for f in fs.spec.item_fields] == ["item", *tables]
    for f in fs.spec.item_fields:
        t = fs.item_tokens[f.name]
        assert t.shape[0] == N and int(t.max()) < f.rows


def test_vq_bag_as_the_code_feature() -> None:
    fs = build_features("aligned_codes", n_items=N, n_users=U, codes=VQ, code_kind="vq")
    assert [(f.name, f.table, f.max_len) for f in fs.spec.item_fields] == [("item", "t_item", 1), ("vq", "t_item", 2)]


def test_encode_user_features_by_hand() -> None:
    users = pl.DataFrame({"user_idx": [2, 0], "user_id": ["u2", "u0"], "gender": ["M", None], "age": ["18", "25"]},
                         schema_overrides={"user_idx": pl.Int32})
    table, feats = encode_user_features(users, n_users=U)
    # sorted categories get 1..; 0 = missing (null, or user 1 absent); the raw user_id is no feature
    assert feats == (("gender", 2), ("age", 3))
    assert table.tolist() == [[0, 2], [0, 0], [1, 1]]


def test_encode_item_fields_by_hand() -> None:
    items = pl.DataFrame({"item_idx": [1, 0, 2], "year": ["1995", "", "1990"],
                          "genres": [["Drama"], ["Comedy", "Drama"], []], "category": [None, None, None]},
                         schema_overrides={"item_idx": pl.Int32, "category": pl.Utf8})
    out = encode_item_fields(items)
    assert set(out) == {"year", "genres"}  # an all-null column is no field
    assert out["year"].tolist() == [[-1], [1], [0]]  # item 0 has "" (unknown); 1990 -> 0, 1995 -> 1
    assert out["genres"].tolist() == [[0, 1], [1, -1], [-1, -1]]  # Comedy 0, Drama 1; a bag per item


def test_controls_keep_shape_and_vocabulary() -> None:
    rnd = control_codes(CODES, (3, 4), "random", seed=0)
    assert rnd.shape == CODES.shape and rnd.min() >= 0 and rnd[:, 0].max() < 3 and rnd[:, 1].max() < 4
    assert np.array_equal(rnd, control_codes(CODES, (3, 4), "random", seed=0))
    assert not np.array_equal(rnd, control_codes(CODES, (3, 4), "random", seed=1))
    shuf = control_codes(CODES, (3, 3), "shuffled", seed=0)
    assert sorted(map(tuple, shuf.tolist())) == sorted(map(tuple, CODES.tolist()))  # the same codes ...
    assert not np.array_equal(shuf, CODES)  # ... on other items


def test_plan_decides_sim_search_once_for_every_variant() -> None:
    cfg = load_config()
    keys = item_side_keys(cfg, "d", 0)
    plans = {v: plan_cell(cfg, v, "sim", 0, keys) for v in cfg.suite.variants}
    assert {(p.sim_search, p.sim_search_codes) for p in plans.values()} == {("hard", "frozen_rq_kmeans")}
    own = load_config(None, ["rank.sim.search_codes=own"])
    plans = {v: plan_cell(own, v, "sim", 0, item_side_keys(own, "d", 0)) for v in own.suite.variants}
    assert (plans["id_only"].sim_search, plans["id_only"].sim_search_codes) == ("soft", None)
    assert plans["aligned_codes"].sim_search_codes == "aligned_rq_kmeans"
    assert plans["random_codes"].sim_search == "soft"  # a control's codes are not a search key
    assert plan_cell(cfg, "id_only", "dlrm", 0, keys).sim_search is None


def test_shared_unseen_ids_reach_the_code_tables() -> None:
    from qarm.quantize.config import TokenizeConfig

    train = np.arange(N) < 4
    keep = build_features("aligned_codes", n_items=N, n_users=U, codes=CODES, vocab_sizes=(3, 3), train_items=train)
    shared = build_features("aligned_codes", n_items=N, n_users=U, codes=CODES, vocab_sizes=(3, 3), train_items=train,
                            tokenization=TokenizeConfig(unseen="shared"))
    assert [f.rows for f in keep.spec.item_fields] == [N, 3, 3]
    assert [f.rows for f in shared.spec.item_fields] == [N, 4, 4]  # one shared id per level
    from qarm.quantize.tokenize import shared_unseen

    want, _ = shared_unseen(CODES, [3, 3], train)
    got = np.concatenate([shared.item_tokens[f"unigram_{j}"].numpy() for j in (1, 2)], 1)
    assert got.tolist() == want.tolist()


def test_random_vq_codes_are_a_bag_of_k_item_ids() -> None:
    n, k = 30, 4
    vq = np.stack([(np.arange(n) + j + 1) % n for j in range(k)], axis=1)  # (N, k) item_idx, vocab (N,)
    rnd = control_codes(vq, (n,), "random", seed=0, kind="vq")
    assert rnd.shape == (n, k) and rnd.min() >= 0 and rnd.max() < n  # k random item ids, not a bag of 1
    assert len(np.unique(rnd)) > n // 2 and np.array_equal(rnd, control_codes(vq, (n,), "random", 0, "vq"))
    fs = build_features("random_codes", n_items=n, n_users=U, codes=rnd, code_kind="vq")
    (field,) = [f for f in fs.spec.item_fields if f.name == "vq"]
    assert field.max_len == k and fs.item_tokens["vq"].shape == (n, k)


def test_spm_controls_have_the_aligned_codes_table() -> None:
    from qarm.quantize.config import TokenizeConfig

    rng = np.random.default_rng(0)
    n, sizes = 60, (4, 4, 8)
    aligned = np.stack([rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 8, n)], axis=1)
    train = np.ones(n, dtype=bool)
    train[-5:] = False
    tok = TokenizeConfig(scheme="spm", spm_vocab_size=48)

    def spm_rows(variant: str, codes: np.ndarray, reference: np.ndarray | None) -> int:
        fs = build_features(variant, n_items=n, n_users=U, codes=codes, vocab_sizes=sizes, tokenization=tok,
                            train_items=train, reference_codes=reference)
        (field,) = [f for f in fs.spec.item_fields if f.name == "spm"]
        return field.rows

    want = spm_rows("aligned_codes", aligned, None)
    for control in ("random", "shuffled"):
        codes = control_codes(aligned, sizes, control, seed=0)
        assert spm_rows(f"{control}_codes", codes, aligned) == want
    # without the aligned codes' tokenizer, a SentencePiece model of the random codes' own has another vocabulary
    assert spm_rows("random_codes", control_codes(aligned, sizes, "random", seed=0), None) != want
