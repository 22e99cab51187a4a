"""A variant plugin: the item id, the aligned codes AND the aligned embedding as a dense vector."""

from benchmark.config.variants import Variant

ALIGNED_CODES_DENSE = Variant("aligned_codes_dense", item_id=True, codes="aligned", vq=None, dense="aligned",
                              description="item id + aligned codes + the aligned embedding as a dense vector")
