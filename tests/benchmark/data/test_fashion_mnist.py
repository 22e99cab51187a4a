"""fashion-mnist-rec: the IDX reader against hand-made files, and the generator on a tiny hand-made "Fashion-MNIST"
(40 images, 10 classes): balanced items, pixel styles, partly informative titles, PNGs in the cache entry,
the documented rating rule, the seed, and a clear message when the files are missing."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmark.config.data import DataConfig, FashionMnistConfig
from benchmark.core.errors import ConfigError, DataError
from benchmark.data.fashion_mnist import CLASSES, NOUNS, kmeans, latent_styles, read_idx


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    """The IDX encoding written out by hand: 00 00 <type> <ndim>, big-endian uint32 dims, big-endian data."""
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(dtype).tobytes()


def test_read_idx_by_hand(tmp_path: Path) -> None:
    img = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a-idx3-ubyte").write_bytes(idx_bytes(img))
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(img)))
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        out = read_idx(tmp_path / name)
        assert out.shape == (2, 3, 4) and out.dtype == np.uint8 and np.array_equal(out, img)
    # header bytes for a 1-d int16 array [1, -2, 300]: 00 00 0B 01 | 00 00 00 03 | 00 01 FF FE 01 2C
    (tmp_path / "s").write_bytes(bytes.fromhex("00000b01 00000003 0001fffe012c"))
    assert read_idx(tmp_path / "s").tolist() == [1, -2, 300]
    f32 = np.array([[0.5, -1.25]], dtype=np.float32)
    (tmp_path / "f").write_bytes(idx_bytes(f32, 0x0D))
    assert np.array_equal(read_idx(tmp_path / "f"), f32)


@pytest.mark.parametrize(("data", "message"), [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "not an IDX file"),
    (b"\x00\x00\x42\x01\x00\x00\x00\x01\x07", "not an IDX file"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05\x07\x07", r"holds 2 bytes, expected 5 for shape \(5,\)"),
])
def test_read_idx_rejects_bad_files(tmp_path: Path, data: bytes, message: str) -> None:
    (tmp_path / "bad").write_bytes(data)
    with pytest.raises(DataError, match=message):
        read_idx(tmp_path / "bad")
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a valid gzip"):
        read_idx(tmp_path / "bad.gz")


def fake_fashion_mnist(root: Path, per_class: int = 4) -> Path:
    """10 classes x per_class 28x28 images: in each class half the images are a bright square on the left, half
    a dim one on the right, so k = 2 pixel clusters per class are unambiguous."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for c in range(10):
        for j in range(per_class):
            im = rng.integers(0, 20, (28, 28)).astype(np.uint8)
            if j % 2 == 0:
                im[4:20, 2:12] = 250
            else:
                im[4:20, 16:26] = 90
            images.append(im)
            labels.append(c)
    root.mkdir(parents=True, exist_ok=True)
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.stack(images))))
    (root / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.array(labels, np.uint8))))
    return root


def _cfg(root: Path, **kw: object) -> DataConfig:
    fc = FashionMnistConfig(**{"n_items": 40, "n_users": 30, "n_interactions": 600, "styles_per_class": 2, **kw})
    # hand-made files: the card's sha256 of the real release cannot match
    return DataConfig(dataset="fashion-mnist-rec", root=str(root), fashion_mnist=fc, history_len=10, verify_sha256=False)


def test_pixel_styles_follow_the_pixels() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 0.1, (10, 5)), rng.normal(3, 0.1, (6, 5))])
    assign = kmeans(x, 2, np.random.default_rng(0))
    assert len(set(assign[:10])) == 1 and len(set(assign[10:])) == 1 and assign[0] != assign[10]
    images = np.zeros((4, 2, 2), np.uint8)
    images[[1, 3]] = 200  # items 1 and 3 carry more ink
    style = latent_styles(images, np.array([7, 7, 7, 7]), 2, np.random.default_rng(0))
    assert style.tolist() == [14, 15, 14, 15]  # class 7 x 2 styles; clusters numbered by ink, lightest first


def test_generator_end_to_end(tmp_path: Path) -> None:
    from benchmark.data.preparation import compute_prepared

    root = fake_fashion_mnist(tmp_path / "fm")
    cfg = _cfg(root, title_class_p=1.0, title_style_p=0.0)
    data = compute_prepared(cfg, tmp_path / "entry", tmp_path / "final")
    items = data.items
    assert items.height == 40 and data.n_users == 30
    classes = items["category"].str.split(":").list.first()
    assert classes.value_counts()["count"].to_list() == [4] * 10  # balanced over the 10 classes
    # the fake images alternate bright (even index) / dim (odd) within a class; styles count up from least ink
    src = items["item_id"].cast(pl.Int64).to_numpy()
    assert (items["category"].str.split(":").list.last().cast(pl.Int64).to_numpy() == (src % 2 == 0)).all()
    # title_class_p = 1: every noun names the class
    for text, cls in zip(items["text"], classes):
        assert text.endswith(NOUNS[CLASSES.index(cls)])
    # PNGs written into the entry, named by their final path, with the real pixels
    from PIL import Image

    path = Path(items["image_path"][0])
    assert path.parent == tmp_path / "final" / "images"
    written = np.asarray(Image.open(tmp_path / "entry" / "images" / path.name))
    raw = read_idx(root / "train-images-idx3-ubyte.gz")[int(items["item_id"][0])]
    assert np.array_equal(written, raw)
    log = pl.concat([data.train, data.val, data.test])
    assert log["rating"].is_between(1, 5).all() and (log["label"] == (log["rating"] >= 4)).all()
    assert log.select("user_idx", "item_idx").is_unique().all()  # each (user, item) once


def test_ratings_follow_liked_styles() -> None:
    """Without rating noise or class boost a rating is round(2.2 + 2 [liked style] + quality), quality ~ N(0, 0.4):
    a liked-style impression is positive (>= 4) unless quality < -0.7 (P = 0.04), any other unless quality >= 1.3
    (P = 0.0006). All impressions from liked styles (p_liked = 1): ~96% positive. None (p_liked = 0): a random
    item is in one of the user's 2 liked styles of 20 ~10% of the time, so ~10% positive."""
    from benchmark.data.fashion_mnist import interactions

    labels = np.repeat(np.arange(10), 4)
    style = labels * 2 + np.tile([0, 1], 20)
    share = {}
    for p_liked in (0.0, 1.0):
        fc = FashionMnistConfig(n_items=40, n_users=200, n_interactions=4000, styles_per_class=2, rating_noise=0.0,
                                class_boost=0.0, p_liked=p_liked)
        log = interactions(labels, style, fc, np.random.default_rng(0))
        assert 200 <= log.height <= 4000 and log["user"].n_unique() == 200
        share[p_liked] = float((log["rating"] >= 4).mean())
    assert share[1.0] > 0.9 and share[0.0] < 0.2


def test_same_seed_same_data_and_missing_files(tmp_path: Path) -> None:
    from benchmark.data.fashion_mnist import load

    root = fake_fashion_mnist(tmp_path / "fm")
    a, b = load(_cfg(root), root), load(_cfg(root), root)
    assert a.items.equals(b.items) and a.interactions.equals(b.interactions)
    c = load(_cfg(root, seed=1), root)
    assert not c.interactions.equals(a.interactions)
    with pytest.raises(DataError, match=r"apt-get install dataset-fashion-mnist.*--root"):
        load(_cfg(tmp_path / "empty"), tmp_path / "empty")
    with pytest.raises(DataError, match="n_items = 60 needs 6"):
        load(_cfg(root, n_items=60), root)


def test_settings_are_checked_at_load() -> None:
    from benchmark.config.suite import load_config

    with pytest.raises(ConfigError, match=r"data\.fashion_mnist\.styles_per_class: expected an integer in \[1, 5\]"):
        load_config("fashion-mnist-rec", ["data.fashion_mnist.styles_per_class=9"])
    with pytest.raises(ConfigError, match=r"data\.fashion_mnist\.p_liked: expected a probability"):
        load_config("fashion-mnist-rec", ["data.fashion_mnist.p_liked=1.5"])


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").exists(), reason="dataset-fashion-mnist not installed")
def test_card_sha256_match_the_debian_files() -> None:
    from benchmark.data import registry

    ds = registry.get("fashion-mnist-rec")
    cfg = DataConfig(dataset="fashion-mnist-rec")
    root = registry.resolve_root(cfg)
    assert str(root) == "/usr/share/datasets/fashion-mnist"
    hashed = registry.hash_and_verify(ds, ds.files(cfg, root), verify=True)  # raises on a mismatch
    assert [h["name"] for h in hashed] == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
