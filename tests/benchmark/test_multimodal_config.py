"""The multi-modal settings load from TOML and `--set`: align.trainable_layers as a number (the text tower) or a
per-modality table, align.fusion, encoder.image_size, and the modality sweep of the fashion-mnist-rec suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.config.suite import load_config, sweep_configs
from benchmark.core.errors import ConfigError
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


@pytest.mark.slow
def test_item_side_with_images_and_an_image_tower(tmp_path: Path) -> None:
    """The suite's frozen and align stages on synthetic-tiny with rendered images: Lite0 at 32 px encodes the
    images, and the image tower (its top MBConv block + conv head) is trained next to the gated fusion head."""
    from benchmark.engine.suite import SuiteRun

    cfg = load_config("synthetic-tiny", [f"suite.runs_dir={tmp_path / 'runs'}", "data.synthetic.images=true",
                                         "encoder.modalities=text,image", "encoder.image_size=32",
                                         "align.trainable_layers.image=1", "align.fusion=gated", "align.epochs=1"])
    run = SuiteRun(cfg, progress=False)
    run.item_side()
    side = run.sides[cfg.data.split.seed]
    assert side.frozen.dims == {"text": 384, "image": 1280}
    summary = side.align.summary
    assert summary.modalities == ("image", "text")
    assert summary.trained == ("gated fusion head (image + text) + the top 1 image encoder block(s) (fine-tuned)")
    assert side.align.embeddings.shape == (90, 16)
