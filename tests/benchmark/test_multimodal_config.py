"""The multi-modal settings load from TOML and `--set`: align.trainable_layers as a number (the text tower) or a
per-modality table, align.fusion, encoder.image_size, and the modality sweep of the fashion-mnist-rec suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.config import load_config, sweep_configs
from benchmark.errors import ConfigError
from qarm.alignment.config import TrainableLayers


def test_trainable_layers_number_or_table(tmp_path: Path) -> None:
    assert load_config(None, ["align.trainable_layers=1"]).align.trainable_layers == 1
    assert load_config(None, ["align.trainable_layers=all"]).align.layers == "all"
    p = tmp_path / "mm.toml"
    p.write_text('extends = "movielens-100k"\n[encoder]\nmodalities = ["text", "image"]\n'
                 '[align]\ntrainable_layers = { text = 2, image = "all" }\nfusion = "gated"\n')
    cfg = load_config(p)  # image + a trained image tower is allowed now
    assert cfg.align.trainable_layers == TrainableLayers(text=2, image="all") and cfg.align.fusion == "gated"
    cfg = load_config(p, ["align.trainable_layers.image=1"])
    assert cfg.align.towers == TrainableLayers(text=2, image=1)
    with pytest.raises(ConfigError, match=r"align\.trainable_layers: expected an integer"):
        load_config(p, ["align.trainable_layers=some"])
    with pytest.raises(ConfigError, match=r"align\.fusion: expected one of 'concat', 'gated'"):
        load_config(p, ["align.fusion=sum"])
    with pytest.raises(ConfigError, match=r"encoder\.image_size: expected an integer >= 16"):
        load_config(p, ["encoder.image_size=8"])


def test_fashion_suite_sweeps_the_modalities() -> None:
    runs = sweep_configs("fashion-mnist-rec", quick=True)
    assert [label for label, _ in runs] == ["encoder.modalities=text", "encoder.modalities=image",
                                            "encoder.modalities=text,image"]
    assert [cfg.encoder.modalities for _, cfg in runs] == [("text",), ("image",), ("text", "image")]
    assert all(cfg.data.dataset == "fashion-mnist-rec" and cfg.suite.seeds == (0,) for _, cfg in runs)
