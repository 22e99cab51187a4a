"""What one replicate's item side produced, as the typed record the suite writes to results.json: pair stats,
the alignment summary, every code set's diagnostics and the token coverage of the cold test items.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.config.suite import SuiteConfig
from benchmark.config.variants import get_variant
from benchmark.core.configlib import to_plain
from benchmark.core.records import CodeSetRecord, ItemSideRecord
from benchmark.itemside.compute import code_set_name
from benchmark.itemside.runner import ItemSide


def item_side_record(cfg: SuiteConfig, side: ItemSide) -> ItemSideRecord:
    assert side.align is not None, "a whole item side (run_item_side), not one loaded for a cell"
    code_sets = tuple(CodeSetRecord(name, cs.kind, to_plain(cs.diagnostics)) for name, cs in side.codes.items())
    return ItemSideRecord(seed=side.seed, stage_keys=side.keys.flat(), pair_stats=side.pairs.stats,
                          alignment=side.align.summary, code_sets=code_sets,
                          token_coverage=token_coverage_of(cfg, side))


def token_coverage_of(cfg: SuiteConfig, side: ItemSide) -> dict[str, dict[str, Any]]:
    """Per code set the variants tokenise: the share of the cold test items' tokens that some training item
    also has (a token no training item has is an embedding row the ranker never trained)."""
    from qarm.quantize.tokenize import token_coverage, tokenize_codes

    items = side.data.items
    train = ~items["is_cold"].to_numpy()
    in_test = np.zeros(items.height, dtype=bool)
    in_test[side.data.test["item_idx"].unique().to_numpy()] = True
    out = {}
    for v in map(get_variant, cfg.suite.variants):
        cs = side.codes.get(code_set_name(v.codes, cfg.quantize.quantizer)) if v.codes else None
        if cs is None or cs.kind != "rq" or cs.name in out:
            continue
        tables = tokenize_codes(cs.codes, cs.vocab_sizes, train, cfg.quantize.tokens)
        out[cs.name] = to_plain(token_coverage(tables, train, ~train & in_test))
    return out
