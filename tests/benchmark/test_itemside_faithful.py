"""The deployment-faithful item side (issue 20): under quantize.fit_on = "warm" a residual quantizer's codebooks
never see a cold item (moving the cold items' embeddings far away changes no centroid; an RQ-VAE fit receives the
warm rows only) while every item is encoded; under "all" they do. The setting is in a residual code set's key,
and every code set reads the data stage."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from benchmark.config.suite import SuiteConfig
from benchmark.itemside import compute as P
from benchmark.itemside.quantizers import FitContext, get_quantizer
from benchmark.itemside.stages import BY_NAME, item_side_keys
from qarm.quantize.config import QuantizeConfig


def _items(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x (40, 4) float32, warm (40,) bool): 30 warm items in three blobs, 10 cold ones."""
    rng = np.random.default_rng(seed)
    x = (np.repeat(np.eye(4)[:3], 10, axis=0).tolist() + rng.standard_normal((10, 4)).tolist())
    x = np.asarray(x, np.float32) + 0.05 * rng.standard_normal((40, 4)).astype(np.float32)
    warm = np.arange(40) < 30
    return x, warm


def _fit(name: str, x: np.ndarray, warm: np.ndarray, fit_on: str) -> Any:
    q = QuantizeConfig(levels=2, codebook_size=4, niter=10, fit_on=fit_on)  # type: ignore[arg-type]
    return get_quantizer(name).fit(x, q, FitContext(0, "cpu", False, warm, fit_on))


def test_warm_codebooks_ignore_cold_items_and_encode_them() -> None:
    x, warm = _items()
    far = x.copy()
    far[~warm] += 100.0  # cold items moved far away
    a, b = _fit("rq_kmeans", x, warm, "warm"), _fit("rq_kmeans", far, warm, "warm")
    assert a.codes.shape == (40, 2) and b.codes.shape == (40, 2)  # every item, cold ones included, is encoded
    # same codebooks: the warm items' codes and reconstructions do not move
    assert np.array_equal(a.codes[warm], b.codes[warm])
    assert np.allclose(a.decode(a.codes[warm]), b.decode(b.codes[warm]))
    c, d = _fit("rq_kmeans", x, warm, "all"), _fit("rq_kmeans", far, warm, "all")
    assert not np.allclose(c.decode(c.codes[warm]), d.decode(d.codes[warm]))  # "all": the cold items pull centroids


@pytest.mark.parametrize(("fit_on", "rows"), [("warm", 30), ("all", 40)])
def test_rq_vae_fits_on_the_rows_fit_on_names(monkeypatch: pytest.MonkeyPatch, fit_on: str, rows: int) -> None:
    import qarm.quantize

    seen: list[np.ndarray] = []

    class Model:
        def encode(self, x: np.ndarray) -> np.ndarray:
            return np.zeros((len(x), 2), np.int64)

        def decode(self, c: np.ndarray) -> np.ndarray:
            return np.zeros((len(c), 4), np.float32)

    def record(x: np.ndarray, *args: Any, **kwargs: Any) -> Model:
        seen.append(x)
        return Model()

    monkeypatch.setattr(qarm.quantize, "fit_rq_vae", record)
    x, warm = _items()
    fitted = _fit("rq_vae", x, warm, fit_on)
    assert seen[0].shape[0] == rows and fitted.codes.shape == (40, 2)
    if fit_on == "warm":
        assert np.array_equal(seen[0], x[warm])


def test_fit_on_is_in_residual_keys_and_every_code_set_reads_the_data() -> None:
    base = SuiteConfig()
    old = dataclasses.replace(base, quantize=dataclasses.replace(base.quantize, fit_on="all"))
    for name in ("aligned_rq_kmeans", "frozen_rq_vae", "aligned_rq_kmeans.fsq"):
        assert P.code_slice(base, name) != P.code_slice(old, name)
        assert "data" in BY_NAME["codes"].inputs_of(name)
    assert P.code_slice(base, "aligned_vq") == P.code_slice(old, "aligned_vq")  # the VQ bag searches warm items
    assert "data" in BY_NAME["codes"].inputs_of("aligned_vq")
    k_new, k_old = item_side_keys(base, "d", 0), item_side_keys(old, "d", 0)
    assert k_new.stages == k_old.stages  # nothing upstream of the codes moves
    assert k_new.key("codes", "aligned_rq_kmeans") != k_old.key("codes", "aligned_rq_kmeans")
    assert k_new.key("data") == k_old.key("data")
    data_moved = item_side_keys(base, "d2", 0)
    assert data_moved.key("codes", "aligned_rq_kmeans") != k_new.key("codes", "aligned_rq_kmeans")


def test_the_report_states_how_the_item_side_was_built() -> None:
    from benchmark.core.configlib import to_plain
    from benchmark.report.tables import item_side_statement

    new = item_side_statement(to_plain(SuiteConfig()))
    assert "fit_on = warm" in new and "align.refit = true" in new and "before the refit" in new
    base = SuiteConfig()
    old = dataclasses.replace(base, quantize=dataclasses.replace(base.quantize, fit_on="all"),
                              align=dataclasses.replace(base.align, refit=False))
    text = item_side_statement(to_plain(old))
    assert "fit_on = all" in text and "align.refit = false" in text
