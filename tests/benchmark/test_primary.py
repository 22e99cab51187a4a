"""The primary family's wiring on fabricated seed AUCs whose verdicts are known by construction."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from benchmark.core.configlib import from_mapping, to_plain
from benchmark.core.errors import ConfigError
from benchmark.report.headline import primary_headline
from benchmark.report.primary import (
    DEFAULT_CONTRASTS,
    Contrast,
    PrimaryFamily,
    PrimaryHypothesis,
    PrimaryRecord,
    PrimaryTest,
    family_tests,
    primary_bootstrap,
    primary_family,
    render_primary,
)
from benchmark.report.stats import BootstrapDelta, ScoredRows, fmt_p, holm, mde, replicates_needed

SEEDS = range(5)
# per-seed differences aligned_codes - baseline, by design:
GAIN = [0.020, 0.021, 0.019, 0.0205, 0.0195]  # t = 0.02 / (0.00079 / sqrt 5) = 57: survives Holm over 16
TINY = [0.0002, -0.0001, 0.0001, 0.0, -0.0002]  # 90% interval about +-0.00015: inside +-0.002
WIDE = [0.010, -0.008, 0.004, -0.003, 0.006]  # interval about [-0.008, +0.012]: neither
CONSTANT = 0.01  # every seed: sd 0, p = 0 (a gain, with a zero-width interval)


def _seed_aucs() -> dict[tuple[str, str, str], dict[int, float]]:
    """dlrm: every contrast on both slices; din: only aligned_codes and id_only (6 tests cannot be run)."""
    aligned = {s: 0.75 + 0.003 * s for s in SEEDS}
    out = {}
    for sl in ("all", "cold"):
        out[("dlrm", "aligned_codes", sl)] = dict(aligned)
        out[("din", "aligned_codes", sl)] = dict(aligned)
    out[("dlrm", "id_only", "all")] = {s: aligned[s] - GAIN[s] for s in SEEDS}
    out[("dlrm", "frozen_codes", "all")] = {s: aligned[s] - TINY[s] for s in SEEDS}
    out[("dlrm", "random_codes", "all")] = {s: aligned[s] - WIDE[s] for s in SEEDS}
    out[("dlrm", "shuffled_codes", "all")] = {s: aligned[s] - CONSTANT for s in SEEDS}
    out[("dlrm", "id_only", "cold")] = {s: aligned[s] + GAIN[s] for s in SEEDS}  # a loss
    out[("dlrm", "frozen_codes", "cold")] = {s: aligned[s] - WIDE[s] for s in SEEDS}
    out[("dlrm", "random_codes", "cold")] = {s: aligned[s] - TINY[s] for s in SEEDS}
    out[("dlrm", "shuffled_codes", "cold")] = {0: aligned[0] - 0.01}  # one seed: untestable
    out[("din", "id_only", "all")] = {s: aligned[s] - TINY[s] for s in SEEDS}
    out[("din", "id_only", "cold")] = {s: aligned[s] - WIDE[s] for s in SEEDS}
    return out


def _by_test(family: PrimaryFamily) -> dict[tuple[str, str, str], PrimaryRecord]:
    return {(r.model, r.slice, r.baseline): r for r in family.records}


def test_default_declaration() -> None:
    h = PrimaryHypothesis()
    assert [c.label for c in h.contrasts] == ["aligned_codes vs id_only", "aligned_codes vs frozen_codes",
                                              "aligned_codes vs random_codes", "aligned_codes vs shuffled_codes"]
    assert h.metric == "auc" and h.slices == ("all", "cold") and h.equivalence_margin == 0.002
    assert h.target_effect == {"all": 0.005, "cold": 0.01} and h.models == ()
    tests = family_tests(h, ("dlrm", "din", "sim"))
    assert len(tests) == 3 * 2 * 4 and tests[0] == PrimaryTest("dlrm", "all", DEFAULT_CONTRASTS[0])


def test_fabricated_verdicts() -> None:
    fam = primary_family(PrimaryHypothesis(), _seed_aucs(), ("dlrm", "din"))
    r = _by_test(fam)
    assert fam.size == 16 and len(fam.records) == 16 and {x.family_size for x in fam.records} == {16}
    assert r[("dlrm", "all", "id_only")].verdict == "gain"
    assert r[("dlrm", "all", "frozen_codes")].verdict == "equivalent"
    assert r[("dlrm", "all", "random_codes")].verdict == "inconclusive"
    const = r[("dlrm", "all", "shuffled_codes")]
    assert const.verdict == "gain" and const.p == 0.0 and const.p_source == "constant"
    assert r[("dlrm", "cold", "id_only")].verdict == "loss"
    assert r[("dlrm", "cold", "frozen_codes")].verdict == "inconclusive"
    assert r[("dlrm", "cold", "random_codes")].verdict == "equivalent"
    one = r[("dlrm", "cold", "shuffled_codes")]
    assert one.verdict == "inconclusive" and one.p_source == "untestable" and one.p is None
    assert one.seeds == (0,) and one.delta == pytest.approx(0.01) and one.mde is None
    assert r[("din", "all", "id_only")].verdict == "equivalent"
    assert r[("din", "cold", "id_only")].verdict == "inconclusive"
    missing = r[("din", "all", "random_codes")]
    assert missing.seeds == () and missing.delta is None and missing.verdict == "inconclusive"
    # the wide contrast is not called equivalent: its 90% interval crosses the margin
    wide = r[("dlrm", "all", "random_codes")]
    assert not wide.within_margin and wide.tost_ci_low < -0.002 < 0.002 < wide.tost_ci_high


def test_holm_over_the_whole_family_counts_the_untestable() -> None:
    fam = primary_family(PrimaryHypothesis(), _seed_aucs(), ("dlrm", "din"))
    raw = [math.nan if x.p is None else x.p for x in fam.records]
    assert sum(math.isnan(p) for p in raw) == 7  # dlrm cold shuffled (1 seed) + din's 6 missing contrasts
    expected = holm([1.0 if math.isnan(p) else p for p in raw])  # counted as p = 1: m = 16, not 9
    for x, e in zip(fam.records, expected):
        assert x.p_holm is None if x.p is None else x.p_holm == pytest.approx(e)
    gain = _by_test(fam)[("dlrm", "all", "id_only")]
    assert gain.p_holm > gain.p * 9  # more than the 9 testable ones multiply it


def test_mde_and_replicates_use_holms_first_step() -> None:
    fam = primary_family(PrimaryHypothesis(), _seed_aucs(), ("dlrm", "din"))
    assert fam.mde_alpha == pytest.approx(0.05 / 16)
    wide = _by_test(fam)[("dlrm", "cold", "frozen_codes")]
    sd = float(np.std(WIDE, ddof=1))
    assert wide.sd == pytest.approx(sd) and wide.mde == pytest.approx(mde(sd, 5, 0.05 / 16))
    assert wide.mde_low < wide.mde < wide.mde_high
    assert wide.target_effect == 0.01
    assert wide.replicates_needed == replicates_needed(sd, 0.01, 0.05 / 16)
    assert wide.replicates_needed > 5  # the wide contrast needs more seeds than it has


def test_bootstrap_p_fills_an_untestable_test_and_rides_along() -> None:
    h = PrimaryHypothesis()
    key = PrimaryTest("dlrm", "cold", Contrast("aligned_codes", "shuffled_codes"))
    boot = BootstrapDelta(0.01, 0.004, 0.016, 0.002, 0.003, 2000, 2000, 1, True, 0.95, 0)
    fam = primary_family(h, _seed_aucs(), ("dlrm", "din"), bootstrap={key: boot})
    r = _by_test(fam)[("dlrm", "cold", "shuffled_codes")]
    assert r.p_source == "bootstrap" and r.p == 0.002 and r.bootstrap_ci_low == 0.004 and r.bootstrap_two_way
    assert r.verdict == "inconclusive"  # one replicate: no t interval, so no gain is called
    assert fam.size == 16


def test_json_round_trip_is_strict_and_nan_free() -> None:
    fam = primary_family(PrimaryHypothesis(), _seed_aucs(), ("dlrm", "din"))
    text = json.dumps(to_plain(fam), allow_nan=False)
    assert from_mapping(PrimaryFamily, json.loads(text)) == fam


def test_declaration_is_validated_strictly() -> None:
    h = from_mapping(PrimaryHypothesis, {"contrasts": [{"variant": "aligned_codes", "baseline": "id_only"}],
                                         "models": ["dlrm"], "slices": ["all"]})
    assert h.contrasts == (Contrast("aligned_codes", "id_only"),)
    with pytest.raises(ConfigError, match="contrasts"):
        from_mapping(PrimaryHypothesis, {"contrasts": [{"variant": "no_such", "baseline": "id_only"}]})
    with pytest.raises(ConfigError, match="target_effect"):
        from_mapping(PrimaryHypothesis, {"slices": ["all", "warm"]})
    with pytest.raises(ConfigError, match="contrasts"):
        PrimaryHypothesis(contrasts=(Contrast("id_only", "id_only"),))


def test_render_prints_the_family_first() -> None:
    fam = primary_family(PrimaryHypothesis(), _seed_aucs(), ("dlrm", "din"))
    md = render_primary(fam)
    first = md.splitlines()[0]
    assert first.startswith("Primary family (AUC)") and "m = 16 tests" in first and "dlrm, din" in first
    rows = [line for line in md.splitlines() if line.startswith("| dlrm") or line.startswith("| din")]
    assert len(rows) == 16
    assert sum("**gain**" in line for line in rows) == 2 and sum("**loss**" in line for line in rows) == 1
    assert "no difference" not in md.replace('not "no difference"', "")


def test_p_values_print_on_their_side_of_alpha() -> None:
    """A p just under alpha is never printed as alpha beside the verdict that rests on it (a Holm p of 0.04995
    printed as 0.05 next to **gain** reads as a contradiction)."""
    assert [fmt_p(p) for p in (0.04995, 0.0726, 0.05, 0.0500000001, 0.00508, 1.0)] == \
        ["0.04995", "0.0726", "0.05", "0.05", "0.00508", "1"]
    assert fmt_p(0.0499999999) == "0.0499999999" and fmt_p(None) == "–"
    assert fmt_p(0.09996, alpha=0.1) == "0.09996" and fmt_p(0.0996, alpha=0.1) == "0.0996"
    fam = primary_family(PrimaryHypothesis(), _seed_aucs(), ("dlrm", "din"))
    r0 = fam.records[0]
    edited = dataclasses.replace(fam, records=(dataclasses.replace(r0, p_holm=0.04995, tost_p=0.049996),
                                               *fam.records[1:]))
    row = next(line for line in render_primary(edited).splitlines()
               if line.startswith(f"| {r0.model} | {r0.slice} | {r0.variant} vs {r0.baseline} |"))
    assert "| 0.04995 | 0.049996 |" in row
    assert "Holm p = 0.04995" in primary_headline(edited)


def test_primary_bootstrap_runs_every_declared_test_with_rows() -> None:
    rng = np.random.default_rng(0)
    h = PrimaryHypothesis(contrasts=(Contrast("aligned_codes", "id_only"),), models=("dlrm",))
    rows = {}
    for seed in range(2):
        n = 400
        user, item = rng.integers(0, 50, n), rng.integers(0, 30, n)
        y = (rng.random(n) < 0.4).astype(float)
        base = y + rng.normal(size=n)
        for sl in ("all", "cold"):
            rows[("dlrm", "id_only", sl, seed)] = ScoredRows(user, item, y, base)
            rows[("dlrm", "aligned_codes", sl, seed)] = ScoredRows(user, item, y, base + 0.5 * y)
    boot = primary_bootstrap(h, rows, (), n_boot=50)
    tests = family_tests(h, ())
    assert set(boot) == set(tests)
    assert not boot[tests[0]].two_way and boot[tests[1]].two_way  # all, then cold
    assert all(b.n_replicates == 2 and b.delta > 0 for b in boot.values())


def test_primary_bootstrap_in_threads_gives_the_same_draws_as_one_by_one() -> None:
    """jobs > 1 bootstraps the tests in threads: every figure of every test equals the one-by-one run's (the order
    the threads finish in changes nothing), and the tests without rows are still left out."""
    rng = np.random.default_rng(1)
    h = PrimaryHypothesis(contrasts=(Contrast("aligned_codes", "id_only"), Contrast("aligned_codes", "frozen_codes"),
                                     Contrast("aligned_dense", "frozen_dense")), models=("dlrm", "sim"))
    rows = {}
    for seed in range(3):
        n = 300 + 50 * seed
        user, item = rng.integers(0, 40, n), rng.integers(0, 25, n)
        y = (rng.random(n) < 0.3).astype(float)
        for model in ("dlrm", "sim"):
            for sl in ("all", "cold"):
                for k, v in enumerate(("id_only", "aligned_codes", "frozen_codes")):
                    rows[(model, v, sl, seed)] = ScoredRows(user, item, y, y * (0.2 * k + 0.1) + rng.normal(size=n))
    one = primary_bootstrap(h, rows, (), n_boot=120, seed=3)
    threaded = primary_bootstrap(h, rows, (), n_boot=120, seed=3, jobs=4)
    assert len(one) == 8 and list(threaded) == list(one)  # aligned_dense has no rows: 2 models x 2 slices x 2
    assert threaded == one  # frozen dataclasses: every field equal
    assert len({b.ci_low for b in one.values()}) == len(one)  # the tests differ: a mix-up would show
