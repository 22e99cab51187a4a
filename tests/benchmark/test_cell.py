"""Variants -> feature sets (benchmark.cell.build_features)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from benchmark.cell import build_features, encode_user_features
from benchmark.errors import ConfigError, DataError
from benchmark.variants import VARIANTS
from recsys_models.dlrm import build_dlrm
from recsys_models.features import embedding_bag_configs

N, U = 6, 3
CODES = np.array([[0, 1], [1, 1], [2, 0], [0, 0], [1, 2], [2, 2]], dtype=np.int64)
VQ = np.array([[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4]], dtype=np.int64)
DENSE = np.arange(N * 3, dtype=np.float32).reshape(N, 3)


def _features(variant: str):
    return build_features(variant, n_items=N, n_users=U, embedding_dim=4, codes=CODES, vq_codes=VQ, dense=DENSE)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_builds(variant: str) -> None:
    v = VARIANTS[variant]
    spec = _features(variant).spec
    assert spec.item_id == v.item_id
    assert (spec.rq_levels == 2) == v.codes and (spec.vq_k == 2) == v.vq and (spec.dense_dim == 3) == v.dense


def test_codes_only_has_no_item_id_table() -> None:
    fs = _features("codes_only")
    assert "t_item" not in [c.name for c in embedding_bag_configs(fs.spec)]
    model = build_dlrm(fs.spec)
    assert not any("t_item" in name for name, _ in model.named_parameters())
    assert any("t_item" in name for name, _ in build_dlrm(_features("id_only").spec).named_parameters())


def test_unknown_variant_and_missing_arrays() -> None:
    with pytest.raises(ConfigError, match="unknown 'qarm'"):
        build_features("qarm", n_items=N, n_users=U)
    with pytest.raises(DataError, match="codes: variant 'aligned_codes' needs it"):
        build_features("aligned_codes", n_items=N, n_users=U)


def test_encode_user_features_by_hand() -> None:
    users = pl.DataFrame({"user_idx": [2, 0], "gender": ["M", None], "age": ["18", "25"]},
                         schema_overrides={"user_idx": pl.Int32})
    table, feats = encode_user_features(users, n_users=U)
    # sorted categories get 1..; 0 = missing (null, or user 1 absent from the frame)
    assert feats == (("gender", 2), ("age", 3))
    assert table.tolist() == [[0, 2], [0, 0], [1, 1]]
