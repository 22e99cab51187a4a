"""Every bad-input case gives a DataError naming the file, line or column (or a counted warning
where dropping is documented); the CLI exits 2; nothing partial is left in the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.core.errors import DataError
from benchmark.data import DataConfig, DataWarning, GenericConfig, prepare


def gen_cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(dataset="generic", root=str(root), split=DataConfig().split.__class__(cold_item_frac=0.0), **kw)


def run_bad(cfg: DataConfig, cache: Path, *needles: str) -> None:
    with pytest.raises(DataError) as e:
        prepare(cfg, cache_dir=cache)
    for n in needles:
        assert n in str(e.value), str(e.value)
    # nothing partial left: no file and no temporary folder anywhere under the cache (empty stage folders are fine)
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file() or p.name.startswith(".")]


def test_missing_folder_and_file(tmp_path: Path, recbole_dir: Path) -> None:
    run_bad(DataConfig(root=str(tmp_path / "nope")), tmp_path / "c", "nope", "missing")
    (recbole_dir / "ml-100k.item").unlink()
    run_bad(DataConfig(root=str(recbole_dir), verify_sha256=False), tmp_path / "c", "ml-100k.item", "missing file")


def test_missing_or_renamed_column(tmp_path: Path, generic_dir: Path) -> None:
    (generic_dir / "interactions.csv").write_text("user,item_id,ts\n1,10,100\n")
    run_bad(gen_cfg(generic_dir), tmp_path / "c", "interactions.csv", "missing column(s) ['user_id']")


def test_unparsable_timestamp(tmp_path: Path, recbole_dir: Path) -> None:
    p = recbole_dir / "ml-100k.inter"
    p.write_text(p.read_text().replace("\t200\n", "\tyesterday\n"))
    run_bad(DataConfig(root=str(recbole_dir), verify_sha256=False), tmp_path / "c",
            "ml-100k.inter: line 3", "'timestamp'", "'yesterday'")


def test_unparsable_rating(tmp_path: Path, latest_dir: Path) -> None:
    p = latest_dir / "ratings.csv"
    p.write_bytes(p.read_bytes().replace(b"2,30,1.0,150", b"2,30,one,150"))
    run_bad(DataConfig(dataset="movielens-latest", root=str(latest_dir)), tmp_path / "c",
            "ratings.csv: line 5", "'rating'", "expected a number")


def test_duplicates_dropped_with_count_or_rejected(tmp_path: Path, generic_dir: Path) -> None:
    with (generic_dir / "interactions.csv").open("a") as f:
        f.write("1,10,100,5\n1,10,100,2\n")
    with pytest.warns(DataWarning, match="dropped 2 duplicate"):
        p = prepare(gen_cfg(generic_dir), cache_dir=tmp_path / "c")
    assert p.stats["impressions"] == 5
    run_bad(gen_cfg(generic_dir, on_duplicate="error"), tmp_path / "c2", "line 7", "repeated (user, item, ts)")


def test_unknown_items(tmp_path: Path, generic_dir: Path) -> None:
    with (generic_dir / "interactions.csv").open("a") as f:
        f.write("3,99,400,5\n")
    run_bad(gen_cfg(generic_dir), tmp_path / "c", "line 7", "'99'", "not in the item table")
    with pytest.warns(DataWarning, match="dropped 1 interactions"):
        p = prepare(gen_cfg(generic_dir, on_unknown_item="drop"), cache_dir=tmp_path / "c3")
    assert p.stats["impressions"] == 5


def test_non_utf8(tmp_path: Path, generic_dir: Path) -> None:
    (generic_dir / "items.csv").write_bytes(b"item_id,text\n10,ok\n20,caf\xe9\n30,x\n40,\n")
    run_bad(gen_cfg(generic_dir), tmp_path / "c", "items.csv: line 3", "0xe9", "utf-8")


def test_empty_files(tmp_path: Path, generic_dir: Path) -> None:
    (generic_dir / "interactions.csv").write_text("")
    run_bad(gen_cfg(generic_dir), tmp_path / "c", "interactions.csv: empty file")
    (generic_dir / "interactions.csv").write_text("user_id,item_id,ts,rating\n")
    run_bad(gen_cfg(generic_dir), tmp_path / "c", "interactions.csv: no data rows")


def test_card_sha256_mismatch(tmp_path: Path, recbole_dir: Path) -> None:
    # The fixture's ml-100k.inter is not RecBole's file, whose sha256 the card fixes.
    run_bad(DataConfig(root=str(recbole_dir)), tmp_path / "c", "ml-100k.inter: sha256", "does not match the card",
            "4edb74e2")


def test_bad_json_line_and_bad_dat_line(tmp_path: Path, amazon_dir: Path, ml1m_dir: Path) -> None:
    with (amazon_dir / "All_Beauty.jsonl").open("a") as f:
        f.write('{"user_id": "9", "parent_asin": "10", "rating": "five", "timestamp": 1}\n')
    run_bad(DataConfig(dataset="amazon-reviews-2023", root=str(amazon_dir)), tmp_path / "c",
            "All_Beauty.jsonl: line 6", "'rating'")
    with (ml1m_dir / "ratings.dat").open("a") as f:
        f.write("4::10::5\n")
    run_bad(DataConfig(dataset="movielens-1m", root=str(ml1m_dir)), tmp_path / "c", "ratings.dat: line 6", "'::'")


def test_generic_ts_format_and_label(tmp_path: Path, generic_dir: Path) -> None:
    g = GenericConfig(ts_format="%Y-%m-%d")
    run_bad(gen_cfg(generic_dir, generic=g), tmp_path / "c", "line 2", "'ts'", "'%Y-%m-%d'")
    (generic_dir / "interactions.csv").write_text("user_id,item_id,ts,y\n1,10,1,2\n")
    run_bad(gen_cfg(generic_dir, generic=GenericConfig(label_col="y")), tmp_path / "c", "line 2", "expected 0 or 1")


def test_cli_exits_2_on_data_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["data", "describe", "movielens-1m", "--root", str(tmp_path / "missing"),
               "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 2 and "ratings.dat" in err and "missing" in err
    assert main(["data", "describe", "no-such-set", "--cache-dir", str(tmp_path / "c")]) == 2
