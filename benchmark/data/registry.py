"""Dataset names -> loader format, card and default root; card sha256 checks.

Cards live in datasets/<card>/card.toml (not a Python package: one named `datasets` would shadow Hugging Face `datasets`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from benchmark.config.data import DataConfig
from benchmark.core.errors import DataError
from benchmark.core.registry import DATASETS
from benchmark.data import amazon, cards, fashion_mnist, generic, kuairand, kuairec, microlens, movielens
from benchmark.data.cards import DATASETS_DIR
from benchmark.data.schema import RawData, open_bytes


@dataclass(frozen=True)
class Dataset:
    """A dataset loader, registered by name in benchmark.core.registry.DATASETS: `files(cfg, root)` lists the raw
    files (hashed into the data key), `load(cfg, root) -> RawData` reads them into the canonical schema
    (benchmark.data.schema), which the data stage then validates, splits and prepares like every dataset."""

    name: str
    card: str  # folder under datasets/ ("" for a plugin without one)
    files: Callable[[DataConfig, Path], list[Path]]
    load: Callable[[DataConfig, Path], RawData]
    raw_subdir: str = ""  # default root = datasets/<card>/raw/<raw_subdir>
    default_dir: str = ""  # an absolute default root instead (a system package's folder)
    # writes item images into the data stage's cache entry: (cfg, root, raw, write_dir, final_dir) -> raw
    write_images: Callable[[DataConfig, Path, RawData, Path, Path], RawData] | None = None
    # the folder of item images the loader reads, or None: (cfg, root) -> folder; its listing enters the data key
    image_folder: Callable[[DataConfig, Path], Path | None] | None = None


def _ml(files: Callable[[Path], list[Path]], load: Callable[[DataConfig, Path], RawData]):
    return (lambda cfg, root: files(root)), load


BUILTIN: dict[str, Dataset] = {
    "movielens-100k": Dataset("movielens-100k", movielens.CARD_100K, *_ml(movielens.files_100k, movielens.load_100k)),
    "movielens-1m": Dataset("movielens-1m", movielens.CARD_1M, *_ml(movielens.files_1m, movielens.load_1m), "ml-1m"),
    **{f"movielens-{v}": Dataset(f"movielens-{v}", movielens.CARD_LATEST,
                                 *_ml(movielens.files_latest, movielens.load_latest), f"ml-{v}")
       for v in ("latest", "latest-small", "20m", "25m", "32m")},
    "amazon-reviews-2023": Dataset("amazon-reviews-2023", amazon.CARD, amazon.files, amazon.load,
                                   image_folder=amazon.images_dir),
    "microlens": Dataset("microlens", microlens.CARD, microlens.files, microlens.load,
                         image_folder=microlens.covers_dir),
    "generic": Dataset("generic", generic.CARD, generic.files, generic.load),
    "synthetic": Dataset("synthetic", "synthetic", lambda cfg, root: [], lambda cfg, root: None),  # type: ignore[arg-type,return-value]
    "fashion-mnist-rec": Dataset("fashion-mnist-rec", "fashion-mnist-rec", fashion_mnist.files, fashion_mnist.load,
                                 default_dir=fashion_mnist.DEBIAN_DIR, write_images=fashion_mnist.write_images),
    "kuairand": Dataset("kuairand", kuairand.CARD, kuairand.files, kuairand.load),
    "kuairec": Dataset("kuairec", kuairec.CARD, kuairec.files, kuairec.load),
}


# The built-in loaders, declared in pyproject.toml as entry points of the group qarm_bench.datasets, e.g.
# `movielens-100k = "benchmark.data.registry:LOADERS.movielens_100k"` (a plugin package declares its own).
LOADERS = SimpleNamespace(**{name.replace("-", "_"): ds for name, ds in BUILTIN.items()})


def get(name: str) -> Dataset:
    """The loader registered as `name` (built-in or plugin); a ConfigError with the registered names otherwise."""
    return DATASETS.get_as(name, Dataset, "data.dataset")


def recbole_ml100k() -> Path:
    """ML-100K as RecBole atomic files inside the installed recbole wheel (never imported)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        raise DataError("movielens-100k: the recbole package is not installed (it carries ML-100K); "
                        "install it (`pip install --no-deps recbole==1.2.1`) or pass --root to a ml-100k folder")
    return Path(spec.origin).parent / "dataset_example" / "ml-100k"


def default_root(ds: Dataset) -> Path:
    if ds.name == "movielens-100k":
        return recbole_ml100k()
    if ds.default_dir:
        return Path(ds.default_dir)
    raw = DATASETS_DIR / ds.card / "raw"
    return raw / ds.raw_subdir if ds.raw_subdir else raw


def resolve_root(cfg: DataConfig) -> Path:
    return Path(cfg.root).expanduser() if cfg.root else default_root(get(cfg.dataset))


def load_card(ds: Dataset) -> dict:
    """The card's TOML as a dict ({} when the repository's datasets/ folder is not around)."""
    return cards.load(ds.card)


def file_sha256(path: Path) -> str:
    """sha256 of the file's bytes; a folder or an unreadable file is a DataError naming it."""
    h = hashlib.sha256()
    with open_bytes(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_and_verify(ds: Dataset, files: list[Path], verify: bool, card_path: Path | None = None) -> list[dict]:
    """sha256 of every raw file; with `verify`, a file the card lists with a fixed sha256 must match."""
    if card_path is not None:
        with card_path.open("rb") as f:
            card = tomllib.load(f)
    else:
        card = load_card(ds)
    fixed = {f["name"]: f["sha256"] for f in card.get("files", []) if f.get("sha256")}
    out = []
    for p in files:
        digest = file_sha256(p)
        want = fixed.get(p.name)
        if verify and want and digest != want:
            raise DataError(f"{p}: sha256 {digest} does not match the card datasets/{ds.card}/card.toml "
                            f"(expected {want}); the file is corrupt or a different release "
                            f"(set data.verify_sha256 = false to use it anyway)")
        out.append({"name": p.name, "bytes": p.stat().st_size, "sha256": digest})
    return out
