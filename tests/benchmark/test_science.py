"""The scientific end-to-end checks, on planted-cluster synthetic data (benchmark/configs/synthetic-science.toml):
item texts name their cluster through noisy words (text_noise 0.8), each user prefers one cluster, 30% of the
items are cold. Three data sets (data.synthetic.content), one suite each:

planted     (1) the aligned embedding recovers held-out pairs better than the frozen one, (2) aligned codes score
            cold items at least 0.05 AUC above item ids alone, while (3) random codes of the same shape and
            vocabulary do not.
confounded  half of every item's theme words name a nuisance topic drawn independently of its cluster, from a
            vocabulary of its own: the frozen encoder sees two topics of equal weight and only the pairs say
            which one users prefer by. (1)-(3), and (4) aligned codes beat the frozen encoder's codes on cold
            items: alignment recovers structure the frozen encoder misses.
null        item texts name a cluster drawn independently of the one users prefer: content carries no
            preference signal, so (5) no contrast of aligned_codes against id_only, random_codes or
            shuffled_codes is a gain, on cold or on all rows.

CI runs seed 0 (QARM_SCIENCE_SEEDS, default "0"): with one seed (4) is the sign of the delta and (5) a bound of
0.10 on each delta (a single seed's cold slice of 72 items moves by that much); with several seeds (4) and (5)
are primary-family verdicts (benchmark.report.primary: paired t over seeds, Holm over the tests checked, TOST):
(4) "gain", (5) never "gain". Seeds 0-4 were checked once on 2026-12-05 (QARM_SCIENCE_SEEDS=0,1,2,3,4, DLRM),
with issue 20's deployment-faithful item side (codebooks fitted on warm items, the aligned head refit on all
pairs for the validation-chosen epochs). Held-out pair recall@10 frozen -> aligned (before the refit) and cold
AUC of id_only / frozen_codes / aligned_codes / random_codes / shuffled_codes:

    planted     seed 0   0.191 -> 0.265   0.464 / 0.632 / 0.637 / 0.481 / 0.498
                seed 1   0.204 -> 0.238   0.494 / 0.619 / 0.659 / 0.486 / 0.482
                seed 2   0.174 -> 0.228   0.456 / 0.622 / 0.637 / 0.500 / 0.424
                seed 3   0.202 -> 0.291   0.492 / 0.644 / 0.641 / 0.497 / 0.498
                seed 4   0.180 -> 0.202   0.455 / 0.649 / 0.627 / 0.481 / 0.476
    confounded  seed 0   0.106 -> 0.186   0.464 / 0.513 / 0.627 / 0.481 / 0.495
                seed 1   0.108 -> 0.175   0.494 / 0.544 / 0.659 / 0.486 / 0.487
                seed 2   0.081 -> 0.099   0.456 / 0.572 / 0.631 / 0.500 / 0.473
                seed 3   0.107 -> 0.142   0.492 / 0.550 / 0.605 / 0.497 / 0.558
                seed 4   0.083 -> 0.105   0.455 / 0.475 / 0.595 / 0.481 / 0.474
    null        seed 0   0.023 -> 0.038   0.464 / 0.492 / 0.501 / 0.481 / 0.429
                seed 1   0.046 -> 0.043   0.494 / 0.554 / 0.451 / 0.486 / 0.529
                seed 2   0.043 -> 0.033   0.456 / 0.504 / 0.544 / 0.500 / 0.534
                seed 3   0.043 -> 0.055   0.492 / 0.493 / 0.552 / 0.497 / 0.462
                seed 4   0.040 -> 0.033   0.455 / 0.497 / 0.458 / 0.481 / 0.469

(1)-(3) hold for every seed on planted and confounded data (random codes at most +0.044 over id_only, seed 2).
(4), confounded, cold, aligned_codes - frozen_codes: +0.093, 95% t interval [+0.052, +0.133], Holm p 0.006 in
the four-contrast family: gain (every seed positive, +0.055 to +0.120). On plain planted data the same contrast
is +0.007 [-0.022, +0.036], inconclusive: MiniLM's frozen codes already find the one planted topic, which is why
(4) runs on the confounded data. (5), null, aligned_codes minus id_only / random_codes / shuffled_codes:
all rows +0.018 / +0.014 / +0.011, cold +0.029 / +0.012 / +0.017; every verdict inconclusive (Holm p >= 0.10);
the largest single-seed delta is +0.090 (cold, vs shuffled_codes, seed 3), under the one-seed bound.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from benchmark.config.suite import load_config
from benchmark.engine.suite import SuiteRun
from benchmark.report.primary import Contrast, PrimaryHypothesis, primary_family

SEEDS = tuple(int(s) for s in os.environ.get("QARM_SCIENCE_SEEDS", "0").split(","))
NULL_BOUND = 0.10  # one seed: the largest null delta of seeds 0-4 is +0.090 (docstring)


def _run(tmp_path: Path, content: str) -> Any:
    runs = tmp_path / "runs"
    cfg = load_config("synthetic-science", [f"suite.runs_dir={runs}", f"suite.seeds={list(SEEDS)}",
                                            f"suite.tracking_uri=sqlite:///{runs / 'mlflow.db'}",
                                            f"data.synthetic.content={content}"])
    return SuiteRun(cfg, progress=False).run()


def _per_seed(results: Any) -> dict[tuple[str, str, str], dict[int, float]]:
    """(model, variant, slice) -> {seed: test AUC}."""
    out: dict[tuple[str, str, str], dict[int, float]] = {}
    for c in results.cells:
        for sl in ("all", "cold"):
            out.setdefault((c.model, c.variant, sl), {})[c.seed] = c.test[sl]["auc"]
    return out


def _family(results: Any, baselines: tuple[str, ...], slices: tuple[str, ...]) -> Any:
    h = PrimaryHypothesis(contrasts=tuple(Contrast("aligned_codes", b) for b in baselines), slices=slices)
    return primary_family(h, _per_seed(results), results.models)


def _content_reaches_cold_items(results: Any) -> None:
    for rep in results.item_side:
        assert rep.alignment.aligned_recall > rep.alignment.frozen_recall  # (1)
    auc = _per_seed(results)
    for s in SEEDS:
        cold = {v: auc[("dlrm", v, "cold")][s] for v in ("id_only", "aligned_codes", "random_codes")}
        assert cold["aligned_codes"] >= cold["id_only"] + 0.05  # (2)
        assert cold["random_codes"] < cold["id_only"] + 0.05  # (3) capacity alone does not do it


@pytest.mark.slow
def test_aligned_codes_carry_content_to_cold_items(tmp_path: Path) -> None:
    _content_reaches_cold_items(_run(tmp_path, "planted"))


@pytest.mark.slow
def test_alignment_recovers_what_the_frozen_encoder_misses(tmp_path: Path) -> None:
    results = _run(tmp_path, "confounded")
    _content_reaches_cold_items(results)
    (rec,) = _family(results, ("frozen_codes",), ("cold",)).records  # (4)
    if len(SEEDS) > 1:
        assert rec.verdict == "gain", rec
    else:
        assert rec.delta is not None and rec.delta > 0, rec


@pytest.mark.slow
def test_null_content_gives_aligned_codes_no_gain(tmp_path: Path) -> None:
    results = _run(tmp_path, "null")
    for rec in _family(results, ("id_only", "random_codes", "shuffled_codes"), ("all", "cold")).records:  # (5)
        if len(SEEDS) > 1:
            assert rec.verdict != "gain", rec
        else:
            assert rec.delta is not None and rec.delta < NULL_BOUND, rec
