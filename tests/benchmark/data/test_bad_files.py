"""Bad files, every loader x every fault (issue 14 point 6): a DataError naming the file (and the line
where there is one), `qarm-bench data describe` exits 2 without a traceback, nothing is cached.

The faulty file is each loader's interactions file (the first one it reads); the fixtures are the
hand-written ones of conftest.py. Cells that cannot happen are left out, with the reason:
    truncated    only compressed/container formats can be detected as cut short: amazon (.jsonl.gz)
                 and generic parquet; a text file cut at a line end is a valid shorter file
    encoding     ML-1M's .dat files are latin-1 (per its card), where every byte is valid; parquet
                 stores typed columns, not text in an encoding
    header_only  JSON lines have no header
    wrong_sep    parquet has no separator
Unreadable: the tests run as root, where chmod 000 does not stop a read, so `Path.open` is patched to
raise PermissionError for that one path (the error open(2) gives a user without read permission).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from benchmark.cli import main
from benchmark.core.errors import ConfigError, DataError
from benchmark.data import DataConfig, GenericConfig, movielens, prepare
from benchmark.data import cli as data_cli
from benchmark.data.cards import encoding
from benchmark.data.schema import DataWarning


@dataclasses.dataclass(frozen=True)
class Loader:
    fixture: str
    dataset: str
    target: str  # the faulty file, relative to the fixture folder
    kind: str  # csv | tsv_header | tsv | dat | jsonl | parquet
    second: str  # another file of the same loader (the items file)
    generic: GenericConfig | None = None

    def cfg(self, root: Path) -> DataConfig:
        split = DataConfig().split.__class__(cold_item_frac=0.0)
        return DataConfig(dataset=self.dataset, root=str(root), verify_sha256=False, split=split,
                          generic=self.generic or GenericConfig())


LOADERS = {
    "ml100k-recbole": Loader("recbole_dir", "movielens-100k", "ml-100k.inter", "tsv_header", "ml-100k.item"),
    "ml100k-grouplens": Loader("grouplens_dir", "movielens-100k", "u.data", "tsv", "u.item"),
    "ml1m": Loader("ml1m_dir", "movielens-1m", "ratings.dat", "dat", "movies.dat"),
    "ml-latest": Loader("latest_dir", "movielens-latest", "ratings.csv", "csv", "movies.csv"),
    "amazon": Loader("amazon_dir", "amazon-reviews-2023", "All_Beauty.jsonl", "jsonl", "meta_All_Beauty.jsonl"),
    "microlens": Loader("microlens_dir", "microlens", "MicroLens-50k_pairs.csv", "csv", "MicroLens-50k_titles.csv"),
    "generic-csv": Loader("generic_dir", "generic", "interactions.csv", "csv", "items.csv"),
    "generic-parquet": Loader("generic_parquet_dir", "generic", "interactions.parquet", "parquet", "items.parquet",
                              GenericConfig(interactions="interactions.parquet", items="items.parquet")),
    "kuairand": Loader("kuairand_dir", "kuairand", "log_standard_4_08_to_4_21_pure.csv", "csv",
                       "video_features_basic_pure.csv"),
    "kuairec": Loader("kuairec_dir", "kuairec", "big_matrix.csv", "csv", "kuairec_caption_category.csv"),
}


@pytest.fixture
def generic_parquet_dir(generic_dir: Path) -> Path:
    for name in ("interactions", "items"):
        pl.read_csv(generic_dir / f"{name}.csv", infer_schema=False).write_parquet(generic_dir / f"{name}.parquet")
    return generic_dir


def _parquet_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


# A fault breaks the target file in place and returns (the file the error must name, needles).
Fault = Callable[[Path, str, pytest.MonkeyPatch], tuple[Path, list[str]]]


def f_dir(p: Path, kind: str, mp: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    p.unlink()
    p.mkdir()
    (p / "inside.txt").write_text("x\n")
    return p, ["is a folder"]


def f_unreadable(p: Path, kind: str, mp: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    real_open = Path.open

    def deny(self: Path, *a, **k):  # noqa: ANN002, ANN003, ANN202
        if self.resolve() == p.resolve():
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *a, **k)

    mp.setattr(Path, "open", deny)
    return p, ["permission denied"]


def f_gzip(p: Path, kind: str, mp: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    p.write_bytes(gzip.compress(p.read_bytes()))
    return p, ["gzip"]


def f_other_format(p: Path, kind: str, mp: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    if kind == "parquet":  # csv text under a .parquet name
        p.write_text("user_id,item_id,ts\n1,10,100\n")
        return p, ["not a parquet file"]
    p.write_bytes(_parquet_bytes(pl.DataFrame({"user_id": ["1"], "item_id": ["10"]})))
    return p, ["parquet"]


def f_zip(p: Path, kind: str, mp: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(p.name, p.read_bytes())
    p.write_bytes(buf.getvalue())
    return p, ["zip archive"]


def f_truncated(p: Path, kind: str, mp: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    data = p.read_bytes()
    if kind == "parquet":
        p.write_bytes(data[: len(data) // 2])
        return p, ["truncated parquet"]
    gz = p.with_name(p.name + ".gz")  # amazon reads <category>.jsonl.gz when there is no .jsonl
    p.unlink()
    gz.write_bytes(gzip.compress(data)[:-20])
    return gz, ["truncated or corrupt gzip"]


def f_encoding(p: Path, kind: str, mp: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    lines = p.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"1", b"\xff1", 1)  # third line (second data row in header files)
    p.write_bytes(b"\n".join(lines))
    return p, ["line 3", "0xff", "not valid utf-8"]


def f_binary(p: Path, kind: str, mp: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    p.write_bytes(bytes(range(256)) * 4)
    return p, ["not a parquet file"] if kind == "parquet" else ["NUL byte", "binary"]


def f_empty(p: Path, kind: str, mp: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    p.write_bytes(b"")
    return p, ["empty file"]


def f_header_only(p: Path, kind: str, mp: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    if kind == "parquet":
        p.write_bytes(_parquet_bytes(pl.read_parquet(p).head(0)))
        return p, ["no data rows"]
    if kind in ("tsv", "dat"):  # headerless formats: a header line is a bad first row
        sep = "\t" if kind == "tsv" else "::"
        p.write_text(sep.join(["user", "item", "rating", "timestamp"]) + "\n")
        return p, ["line 1", "'rating'"]
    p.write_bytes(p.read_bytes().splitlines(keepends=True)[0])
    return p, ["no data rows"]


def f_wrong_sep(p: Path, kind: str, mp: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    text = p.read_bytes().decode("latin-1")
    if kind == "jsonl":  # csv text where JSON lines are expected
        p.write_text("user_id,parent_asin,rating,timestamp\n1,10,5.0,100\n")
        return p, ["line 1", "not valid JSON"]
    old, new = {"csv": (",", ";"), "tsv_header": ("\t", ","), "tsv": ("\t", ","), "dat": ("::", "\t")}[kind]
    p.write_bytes(text.replace(old, new).encode("latin-1"))
    return p, ["line 1", "separated"]


FAULTS: dict[str, Fault] = {
    "dir": f_dir, "unreadable": f_unreadable, "gzip": f_gzip, "other_format": f_other_format, "zip": f_zip,
    "truncated": f_truncated, "encoding": f_encoding, "binary": f_binary, "empty": f_empty,
    "header_only": f_header_only, "wrong_sep": f_wrong_sep,
}
NOT_APPLICABLE = {  # (fault, kind): why — see the module docstring
    **{("truncated", k): "no container" for k in ("csv", "tsv_header", "tsv", "dat")},
    ("encoding", "dat"): "latin-1: every byte is valid",
    ("encoding", "parquet"): "typed columns",
    ("header_only", "jsonl"): "no header",
    ("wrong_sep", "parquet"): "no separator",
}
MATRIX = [(ln, fn) for ln, loader in LOADERS.items() for fn in FAULTS if (fn, loader.kind) not in NOT_APPLICABLE]


def assert_nothing_cached(cache: Path) -> None:
    assert not cache.exists() or list(cache.iterdir()) == [], list(cache.iterdir())


def test_matrix_size() -> None:
    assert len(LOADERS) == 10 and len(FAULTS) == 11
    # truncated: 8 text loaders; encoding: ml1m, generic-parquet; header_only: amazon; wrong_sep: parquet
    assert len(MATRIX) == 10 * 11 - 8 - 2 - 1 - 1 == 98


@pytest.mark.parametrize("loader_name,fault_name", MATRIX)
def test_bad_file(loader_name: str, fault_name: str, tmp_path: Path, request: pytest.FixtureRequest,
                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    loader = LOADERS[loader_name]
    root: Path = request.getfixturevalue(loader.fixture)
    named, needles = FAULTS[fault_name](root / loader.target, loader.kind, monkeypatch)
    cfg = loader.cfg(root)

    with pytest.raises(DataError) as e:
        prepare(cfg, cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert msg.startswith(f"{named}:"), msg
    for needle in needles:
        assert needle in msg, msg
    assert_nothing_cached(tmp_path / "cache")

    # The CLI: exit 2, the file named in one or two lines, no traceback, nothing cached. The generic
    # parquet layout cannot be given by flags, so that one's config is handed to the CLI directly.
    cache = tmp_path / "cli-cache"
    if loader.generic is not None:
        monkeypatch.setattr(data_cli, "config_from_args",
                            lambda args: dataclasses.replace(cfg, cache_dir=str(cache)))
    capsys.readouterr()
    rc = main(["data", "describe", loader.dataset, "--root", str(root), "--cache-dir", str(cache)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert str(named) in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
    assert_nothing_cached(cache)


@pytest.mark.parametrize("loader_name", list(LOADERS))
def test_second_file_folder_or_binary(loader_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The items file is checked the same way as the interactions file."""
    loader = LOADERS[loader_name]
    root: Path = request.getfixturevalue(loader.fixture)
    second = root / loader.second
    second.unlink()
    second.mkdir()
    with pytest.raises(DataError, match="is a folder"):
        prepare(loader.cfg(root), cache_dir=tmp_path / "c")
    second.rmdir()
    second.write_bytes(b"\x00" * 64)
    with pytest.raises(DataError) as e:
        prepare(loader.cfg(root), cache_dir=tmp_path / "c")
    assert str(e.value).startswith(f"{second}:"), str(e.value)
    assert_nothing_cached(tmp_path / "c")


# ---- image folders: MicroLens covers (data.microlens.covers_dir), Amazon images (data.amazon.images_dir) -----
# A missing or non-folder setting stops the data stage with a DataError naming the folder and the setting. A bad
# image file does not: the image tower (qarm/encoders/image.py) skips items whose image_path is null and stops
# on a path it cannot open, so the loader nulls the item's path and counts it in a DataWarning naming the file.

IMAGE_FOLDERS = {  # loader -> (the folder setting's field, its dotted name, the fixture's image relative to root)
    "microlens": ("microlens", "data.microlens.covers_dir", "MicroLens-50k_covers/20.jpg"),
    "amazon": ("amazon", "data.amazon.images_dir", "images/10.jpg"),
}


def _with_folder(cfg: DataConfig, loader_name: str, folder: str) -> DataConfig:
    section, _, _ = IMAGE_FOLDERS[loader_name]
    field = "covers_dir" if section == "microlens" else "images_dir"
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{field: folder})})


@pytest.mark.parametrize("loader_name", list(IMAGE_FOLDERS))
@pytest.mark.parametrize("fault", ["missing", "a_file"])
def test_image_folder_setting(loader_name: str, fault: str, tmp_path: Path, request: pytest.FixtureRequest,
                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    loader = LOADERS[loader_name]
    root: Path = request.getfixturevalue(loader.fixture)
    _, setting, _ = IMAGE_FOLDERS[loader_name]
    folder = root / "pictures"
    if fault == "a_file":
        folder.write_text("not a folder\n")
    cfg = _with_folder(loader.cfg(root), loader_name, "pictures")
    with pytest.raises(DataError) as e:
        prepare(cfg, cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert msg.startswith(f"{folder}: {'missing images folder' if fault == 'missing' else 'not a folder'} "
                          f"({setting})"), msg
    assert_nothing_cached(tmp_path / "cache")
    cache = tmp_path / "cli-cache"  # the CLI: exit 2, one or two lines naming the folder, nothing cached
    monkeypatch.setattr(data_cli, "config_from_args", lambda args: dataclasses.replace(cfg, cache_dir=str(cache)))
    capsys.readouterr()
    rc = main(["data", "describe", loader.dataset, "--root", str(root), "--cache-dir", str(cache)])
    err = capsys.readouterr().err
    assert rc == 2 and str(folder) in err and setting in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) <= 2, err
    assert_nothing_cached(cache)


def _deny_builtin_open(p: Path, mp: pytest.MonkeyPatch) -> None:
    """PIL opens images with builtins.open: raise PermissionError for that one path (the tests run as root)."""
    import builtins

    real_open = builtins.open

    def deny(file, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if isinstance(file, str | Path) and Path(file).resolve() == p.resolve():
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)

    mp.setattr(builtins, "open", deny)


IMAGE_FAULTS: dict[str, Callable[[Path, pytest.MonkeyPatch], str]] = {  # breaks the image, returns a needle
    "empty": lambda p, mp: (p.write_bytes(b""), "not an image file")[1],
    "not_image": lambda p, mp: (p.write_text("<html>404</html>"), "not an image file")[1],
    "truncated": lambda p, mp: (p.write_bytes(p.read_bytes()[:-40]), "cannot read the image")[1],
    "gzip": lambda p, mp: (p.write_bytes(gzip.compress(p.read_bytes())), "not an image file")[1],
    "dir": lambda p, mp: (p.unlink(), p.mkdir(), "is a folder")[2],
    "unreadable": lambda p, mp: (_deny_builtin_open(p, mp), "permission denied")[1],
}


@pytest.mark.parametrize("loader_name", list(IMAGE_FOLDERS))
@pytest.mark.parametrize("fault", list(IMAGE_FAULTS))
def test_bad_image_is_nulled_and_counted(loader_name: str, fault: str, tmp_path: Path,
                                         request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    loader = LOADERS[loader_name]
    root: Path = request.getfixturevalue(loader.fixture)
    _, setting, rel = IMAGE_FOLDERS[loader_name]
    image = root / rel
    needle = IMAGE_FAULTS[fault](image, monkeypatch)
    with pytest.warns(DataWarning) as got:
        data = prepare(loader.cfg(root), cache_dir=tmp_path / "cache")
    assert data.items["image_path"].null_count() == data.items.height  # the fixture's one image is gone
    msgs = [str(w.message) for w in got if "unreadable" in str(w.message)]
    assert len(msgs) == 1 and f"1 unreadable (first: {image}: {needle}" in msgs[0] and setting in msgs[0], msgs


def test_io_error_while_reading_is_a_data_error(tmp_path: Path, generic_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error in the middle of a read (a failing disk, a vanished network mount) names the file."""
    target = generic_dir / "items.csv"
    real_open = Path.open

    class Failing(io.BytesIO):
        def read(self, *a) -> bytes:  # noqa: ANN002
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(Path, "open", lambda self, *a, **k: Failing() if self == target else real_open(self, *a, **k))
    with pytest.raises(DataError, match=r"items\.csv: cannot read the file: Input/output error"):
        prepare(LOADERS["generic-csv"].cfg(generic_dir), cache_dir=tmp_path / "c")


def test_card_declares_the_encoding(tmp_path: Path, grouplens_dir: Path, ml1m_dir: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """GroupLens's latin-1 files read by the card's word; a card saying utf-8 makes the same bytes fail
    with the line of the first bad byte (so it is the card, not the loader, that decides)."""
    assert encoding(movielens.CARD_100K, "u.item", "utf-8") == "latin-1"
    assert encoding(movielens.CARD_100K, "u.data", "latin-1") == "utf-8"
    assert encoding(movielens.CARD_1M, "movies.dat", "utf-8") == "latin-1"
    items = prepare(LOADERS["ml1m"].cfg(ml1m_dir), cache_dir=tmp_path / "c").items
    assert "Café Society (1995). Genres: Action" in items["text"].to_list()

    from benchmark.data import cards

    real = cards.load
    monkeypatch.setattr(cards, "load", lambda card: {**real(card), "encoding": "utf-8"}
                        if card == movielens.CARD_1M else real(card))
    with pytest.raises(DataError, match=r"movies\.dat: line 2: byte 0xe9 is not valid utf-8"):
        prepare(LOADERS["ml1m"].cfg(ml1m_dir), cache_dir=tmp_path / "c2")
    monkeypatch.setattr(cards, "load", lambda card: {"encoding": "klingon"})
    with pytest.raises(ConfigError, match="'klingon'.*not a known text encoding"):
        prepare(LOADERS["ml100k-grouplens"].cfg(grouplens_dir), cache_dir=tmp_path / "c3")


def test_utf8_byte_order_mark_is_dropped(tmp_path: Path, generic_dir: Path) -> None:
    p = generic_dir / "interactions.csv"
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    data = prepare(LOADERS["generic-csv"].cfg(generic_dir), cache_dir=tmp_path / "c")
    assert data.stats["impressions"] == 5
