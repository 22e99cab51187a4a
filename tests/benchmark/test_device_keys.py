"""Cache keys carry the device class where results differ (issue 24): a GPU run's seeded item-side stages
(pairs, align, codes) and its rank cells get keys of their own, so GPU floats never answer for a CPU run nor the
reverse; every CPU key is what it was (tests/benchmark/test_golden.py pins them)."""

from __future__ import annotations

from benchmark.cells.plan import plan_cell
from benchmark.config.suite import load_config
from benchmark.engine.plan import cells_of
from benchmark.itemside.stages import BY_NAME, device_key_part, item_side_keys


def test_cpu_keys_are_unchanged_and_cuda_keys_differ_where_seeded() -> None:
    cfg = load_config("synthetic-tiny")
    plain, cpu, cuda = (item_side_keys(cfg, "data-key", 0), item_side_keys(cfg, "data-key", 0, "cpu"),
                        item_side_keys(cfg, "data-key", 0, "cuda"))
    assert plain == cpu and device_key_part("cpu") == [] and device_key_part("cuda") == ["device=cuda"]
    assert cuda.device_class == "cuda" and cpu.device_class == "cpu"
    same = {s for s in cpu.stages if cpu.stages[s] == cuda.stages[s]}
    assert same == {"data", "frozen"} == {s for s in cpu.stages if not BY_NAME[s].seeded}
    assert all(cpu.code_sets[n] != cuda.code_sets[n] for n in cpu.code_sets)


def test_every_rank_cell_key_carries_the_device_class_off_the_cpu() -> None:
    cfg = load_config("synthetic-tiny")
    cpu, cuda = item_side_keys(cfg, "data-key", 0), item_side_keys(cfg, "data-key", 0, "cuda")
    for v, m, s in cells_of(cfg):
        if s != cfg.suite.seeds[0]:
            continue
        a, b = plan_cell(cfg, v, m, s, cpu), plan_cell(cfg, v, m, s, cuda)
        assert a.key != b.key, (v, m)
        # the same cell planned without the device class, by hand: the CPU key is the old key
        assert a == plan_cell(cfg, v, m, s, item_side_keys(cfg, "data-key", 0))
