"""MicroLens covers and Amazon product images (issue 22 points 3 and 5), on hand-made files in the published
layouts written into tmp_path, with tiny real images made by PIL:

    MicroLens-100k: pairs csv (ms timestamps, T0 = 1.6e12 ms), headerless title_en csv, covers/<item>.jpg
        user 1 clicks 10 (T0 + 100 s) and 20 (T0 + 200 s); user 2 clicks 10 and 30 (both T0 + 150 s);
        user 3 clicks 40 (T0 + 300 s)
        covers: 10 a red JPEG, 20 a blue JPEG, 30 none, 40 a truncated JPEG (unreadable)
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmark.config.data import AmazonConfig, DataConfig, MicroLensConfig, NegativesConfig, SplitConfig
from benchmark.config.suite import load_config
from benchmark.core.errors import DataError
from benchmark.data import amazon, microlens, prepare
from benchmark.data.preparation import data_key
from benchmark.data.schema import DataWarning

from .conftest import write, write_image

PREFIX = "MicroLens-100k"
NO_COLD = SplitConfig(cold_item_frac=0.0)
T0_MS = 1_600_000_000_000  # 2020-09-13 in milliseconds, as the release's timestamps are


@pytest.fixture
def ml100k_dir(tmp_path: Path) -> Path:
    d = tmp_path / "microlens"
    write(d / f"{PREFIX}_pairs.csv", "user,item,timestamp\n" + "".join(
        f"{u},{i},{T0_MS + t * 1000}\n" for u, i, t in ((1, 10, 100), (1, 20, 200), (2, 10, 150), (2, 30, 150),
                                                        (3, 40, 300))))
    # the release's English titles: no header, a comma inside a title unquoted (20) or quoted (30)
    write(d / f"{PREFIX}_title_en.csv", '10,Cat video\n20,Dance, dance\n30,"Cook, eat, sleep"\n40,\n')
    write_image(d / "covers" / "10.jpg", (220, 20, 20), size=40)
    write_image(d / "covers" / "20.jpg", (20, 20, 220), size=40)
    full = write_image(d / "covers" / "40.jpg", (20, 220, 20), size=40).read_bytes()
    (d / "covers" / "40.jpg").write_bytes(full[: len(full) // 2])
    return d


def ml_cfg(root: Path, **microlens: str) -> DataConfig:
    return DataConfig(dataset="microlens", root=str(root), verify_sha256=False, split=NO_COLD,
                      microlens=MicroLensConfig(prefix=PREFIX, **microlens))


def test_microlens_100k_titles_and_covers(ml100k_dir: Path) -> None:
    with pytest.warns(DataWarning) as got:
        raw = microlens.load(ml_cfg(ml100k_dir), ml100k_dir)
    covers = ml100k_dir / "covers"
    assert raw.items["item_id"].to_list() == ["10", "20", "30", "40"]
    assert raw.items["text"].to_list() == ["Cat video", "Dance, dance", "Cook, eat, sleep", ""]
    assert raw.items["image_path"].to_list() == [str(covers / "10.jpg"), str(covers / "20.jpg"), None, None]
    # "auto": values >= 1e11 are milliseconds, floored to seconds
    assert raw.interactions["ts"].to_list() == [T0_MS // 1000 + t for t in (100, 200, 150, 150, 300)]
    assert raw.interactions["label"].to_list() == [1] * 5
    msg = str(got[0].message)
    assert "2 of 4 items have a cover; 1 have no file; 1 unreadable" in msg
    assert f"{covers / '40.jpg'}: cannot read the image" in msg and "data.microlens.covers_dir" in msg


def test_microlens_covers_dir_setting(ml100k_dir: Path) -> None:
    (ml100k_dir / "covers").rename(ml100k_dir / "elsewhere")
    with pytest.warns(DataWarning):  # 40.jpg is unreadable
        raw = microlens.load(ml_cfg(ml100k_dir, covers_dir="elsewhere"), ml100k_dir)
        absolute = microlens.load(ml_cfg(ml100k_dir, covers_dir=str(ml100k_dir / "elsewhere")), ml100k_dir)
    assert raw.items["image_path"][0] == str(ml100k_dir / "elsewhere" / "10.jpg")
    assert absolute.items["image_path"].to_list() == raw.items["image_path"].to_list()
    # the release's own folder name is found when covers_dir is unset and there is no covers/
    (ml100k_dir / "elsewhere").rename(ml100k_dir / f"{PREFIX}_covers")
    with pytest.warns(DataWarning):
        assert microlens.load(ml_cfg(ml100k_dir), ml100k_dir).items["image_path"][1] == str(
            ml100k_dir / f"{PREFIX}_covers" / "20.jpg")


def test_microlens_without_covers_warns_and_leaves_paths_null(ml100k_dir: Path) -> None:
    for p in (ml100k_dir / "covers").iterdir():
        p.unlink()
    (ml100k_dir / "covers").rmdir()
    with pytest.warns(DataWarning, match=r"no covers folder .*set data\.microlens\.covers_dir"):
        raw = microlens.load(ml_cfg(ml100k_dir), ml100k_dir)
    assert raw.items["image_path"].null_count() == 4


def test_microlens_pairs_tsv_is_not_read(ml100k_dir: Path) -> None:
    (ml100k_dir / f"{PREFIX}_pairs.csv").rename(ml100k_dir / f"{PREFIX}_pairs.tsv")
    with pytest.raises(DataError, match=r"_pairs\.csv: missing file .*pairs\.tsv is there.*without timestamps"):
        microlens.load(ml_cfg(ml100k_dir), ml100k_dir)


def test_covers_folder_listing_is_in_the_data_key(ml100k_dir: Path) -> None:
    cfg = ml_cfg(ml100k_dir)
    key = data_key(cfg)
    write_image(ml100k_dir / "covers" / "30.jpg")
    assert data_key(cfg) != key  # a new cover: a new data entry, not a stale cached null path


def test_click_only_without_negatives_warns_naming_data_negatives(ml100k_dir: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        prepare(ml_cfg(ml100k_dir), cache_dir=tmp_path / "c")
    msgs = [str(w.message) for w in got if issubclass(w.category, DataWarning)]
    assert any("every one of the 5 impressions has label 1" in m and "data.negatives" in m for m in msgs), msgs
    cfg = dataclasses.replace(ml_cfg(ml100k_dir), negatives=NegativesConfig(kind="uniform", ratio=1))
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        data = prepare(cfg, cache_dir=tmp_path / "c")
    assert not any("has label 1" in str(w.message) for w in got)
    labels = pl.concat([data.train, data.val, data.test])["label"]
    assert labels.min() == 0 and labels.max() == 1


def test_packaged_microlens_suite() -> None:
    cfg = load_config("microlens")
    assert cfg.data.dataset == "microlens" and cfg.encoder.modalities == ("text", "image")
    assert cfg.data.negatives == NegativesConfig(kind="uniform", ratio=4, seed=0)
    assert cfg.data.microlens == MicroLensConfig(prefix="MicroLens-100k", covers_dir="MicroLens-100k_covers")


def test_packaged_suite_missing_covers_names_the_setting(ml100k_dir: Path, tmp_path: Path) -> None:
    cfg = load_config("microlens", [f"data.root={ml100k_dir}", "data.verify_sha256=false"])
    with pytest.raises(DataError, match=r"MicroLens-100k_covers: missing images folder "
                                        r"\(data\.microlens\.covers_dir\)"):
        data_key(cfg.data)  # what `plan` computes: the missing folder stops it before anything runs
    (ml100k_dir / "covers").rename(ml100k_dir / f"{PREFIX}_covers")  # as the release's zip unpacks
    assert data_key(cfg.data).startswith("microlens-")


def test_covers_reach_the_frozen_stage(ml100k_dir: Path, tmp_path: Path) -> None:
    """prepare + the frozen stage of the packaged suite, image modality only (Lite0 at 32 px, seconds): items
    with a readable cover get a non-zero image feature, the others none, and the two colours differ."""
    from benchmark.itemside.compute import StageContext, compute_frozen

    cfg = load_config("microlens", [f"data.root={ml100k_dir}", "data.microlens.covers_dir=covers",
                                    "data.split.cold_item_frac=0",
                                    "encoder.modalities=image", "encoder.image_size=32", "encoder.batch_size=4"])
    with pytest.warns(DataWarning):
        data = prepare(cfg.data, cache_dir=tmp_path / "cache")
    paths = data.items.sort("item_idx")["image_path"].to_list()
    assert [p is not None for p in paths] == [True, True, False, False]
    feats = compute_frozen(StageContext(cfg, 0, {"data": data}, tmp_path / "w", tmp_path / "f", progress=False))
    assert feats.present["image"].tolist() == [True, True, False, False]
    img = feats.features["image"]
    assert np.allclose(np.linalg.norm(img[:2], axis=1), 1.0, atol=1e-5) and not img[2:].any()
    assert not np.allclose(img[0], img[1])


# ---- Amazon Reviews 2023 with the user's own image download -------------------------------------------


def amazon_cfg(root: Path, images_dir: str = "", negatives: NegativesConfig | None = None) -> DataConfig:
    return DataConfig(dataset="amazon-reviews-2023", root=str(root), verify_sha256=False, split=NO_COLD,
                      amazon=AmazonConfig(images_dir=images_dir), negatives=negatives or NegativesConfig())


def test_amazon_images_dir(amazon_dir: Path) -> None:
    pics = amazon_dir / "pics"
    write_image(pics / "10.jpg")
    write_image(pics / "20.png")
    (pics / "30.jpg").write_text("<html>404 Not Found</html>")  # a failed download saved under the item's name
    with pytest.warns(DataWarning) as got:
        raw = amazon.load(amazon_cfg(amazon_dir, "pics"), amazon_dir)
    assert raw.items["image_path"].to_list() == [str(pics / "10.jpg"), str(pics / "20.png"), None, None]
    msg = str(got[0].message)
    assert "2 of 4 items have a product image; 1 have no file; 1 unreadable" in msg
    assert f"{pics / '30.jpg'}: not an image file" in msg and "data.amazon.images_dir" in msg


def test_amazon_missing_images_dir_is_an_error(amazon_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope: missing images folder \(data\.amazon\.images_dir\)"):
        prepare(amazon_cfg(amazon_dir, "nope"), cache_dir=tmp_path / "c")


def test_amazon_with_images_and_sampled_negatives(amazon_dir: Path, tmp_path: Path) -> None:
    """The fixture's default <root>/images folder (item 10) and 2 sampled negatives per positive: the real
    label-0 reviews stay, the sampled ones are added and counted."""
    cfg = amazon_cfg(amazon_dir, negatives=NegativesConfig(kind="uniform", ratio=2))
    with pytest.warns(DataWarning):
        data = prepare(cfg, cache_dir=tmp_path / "c")
    assert data.items.filter(pl.col("item_id") == "10")["image_path"][0] == str(amazon_dir / "images" / "10.jpg")
    neg = data.stats["negatives"]
    drawn = neg["train_negatives"] + neg["val_negatives"] + neg["test_negatives"]
    rows = data.train.height + data.val.height + data.test.height
    assert drawn > 0 and rows == 5 + drawn  # the fixture's 5 reviews + the sampled rows
