"""Each loader on its hand-written fixture (tests/benchmark/data/conftest.py): exact expected frames."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from benchmark.config.data import DataConfig, KuaiRandConfig, KuaiRecConfig, SplitConfig
from benchmark.data import amazon, build_prepared, generic, kuairand, kuairec, microlens, movielens
from benchmark.data.schema import DataWarning, RawData, validate

CFG = DataConfig(verify_sha256=False)


def rated(labels: bool = True) -> pl.DataFrame:
    """The fixtures' five ratings in canonical form (label = rating >= 4)."""
    return pl.DataFrame({
        "user_id": ["1", "1", "2", "2", "3"], "item_id": ["10", "20", "10", "30", "40"],
        "ts": [100, 200, 150, 150, 300], "label": [1, 0, 1, 0, 0],
        "rating": [5.0, 3.0, 4.0, 1.0, 2.0]}, schema={"user_id": pl.Utf8, "item_id": pl.Utf8, "ts": pl.Int64,
                                                     "label": pl.Int8, "rating": pl.Float32})


def canon(raw: RawData) -> RawData:
    return validate(raw, on_duplicate="error", on_unknown_item="error")


def items(texts: list[str], **extra: list) -> pl.DataFrame:
    return pl.DataFrame({"item_id": ["10", "20", "30", "40"], "text": texts, **extra})


def test_movielens_100k_recbole(recbole_dir: Path) -> None:
    raw = canon(movielens.load_100k(CFG, recbole_dir))
    assert_frame_equal(raw.interactions, rated())
    assert_frame_equal(raw.items, items(["Toy Story (1995). Genres: Animation, Comedy", "Heat (1995). Genres: Action",
                                         "Usual Suspects, The (1995). Genres: Crime, Thriller", ""],
                                        year=YEARS, genres=pl.Series(GENRES, dtype=pl.List(pl.Utf8))))
    assert raw.users is not None
    assert_frame_equal(raw.users, pl.DataFrame({"user_id": ["1", "2", "3"], "age": ["24", "53", "23"],
                                                "gender": ["M", "F", "M"],
                                                "occupation": ["technician", "other", "writer"]}))


# Every MovieLens fixture tells the same story: items 10/20/30 are from 1995, item 40 has nothing.
YEARS = ["1995", "1995", "1995", ""]
GENRES = [["Animation", "Comedy"], ["Action"], ["Crime", "Thriller"], []]


@pytest.mark.parametrize("fixture,load", [("recbole_dir", movielens.load_100k), ("grouplens_dir", movielens.load_100k),
                                          ("ml1m_dir", movielens.load_1m), ("latest_dir", movielens.load_latest)])
def test_movielens_year_and_genres_columns(fixture: str, load, request: pytest.FixtureRequest) -> None:
    raw = canon(load(CFG, request.getfixturevalue(fixture)))
    assert raw.items.schema["year"] == pl.Utf8 and raw.items.schema["genres"] == pl.List(pl.Utf8)
    assert raw.items["year"].to_list() == YEARS
    assert raw.items["genres"].to_list() == GENRES


def test_movielens_100k_grouplens_latin1(grouplens_dir: Path) -> None:
    raw = canon(movielens.load_100k(CFG, grouplens_dir))
    assert_frame_equal(raw.interactions, rated())
    assert raw.items["text"].to_list() == ["Toy Story (1995). Genres: Animation, Comedy",
                                           "Café Society (1995). Genres: Action",
                                           "Usual Suspects, The (1995). Genres: Crime, Thriller", ""]
    assert raw.users is not None and raw.users.columns == ["user_id", "age", "gender", "occupation"]


def test_movielens_1m(ml1m_dir: Path) -> None:
    raw = canon(movielens.load_1m(CFG, ml1m_dir))
    assert_frame_equal(raw.interactions, rated())
    assert raw.items["text"].to_list() == ["Toy Story (1995). Genres: Animation, Comedy",
                                           "Café Society (1995). Genres: Action",
                                           "Usual Suspects, The (1995). Genres: Crime, Thriller", ""]
    assert raw.users is not None
    # ML-1M README: occupation 17 = technician/engineer, 0 = other, 20 = writer.
    assert raw.users["occupation"].to_list() == ["technician/engineer", "other", "writer"]


def test_movielens_latest_crlf_quotes_tags(latest_dir: Path) -> None:
    raw = canon(movielens.load_latest(CFG, latest_dir))
    assert_frame_equal(raw.interactions, rated())
    assert raw.items["text"].to_list() == [
        "Toy Story (1995). Genres: Animation, Comedy. Tags: pixar, fun",  # "Pixar"+"pixar" = 2 > fun = 1
        'Heat, the "Movie" (1995). Genres: Action. Tags: heist',
        "Usual Suspects, The (1995). Genres: Crime, Thriller", ""]
    assert raw.users is None


def test_amazon_2023(amazon_dir: Path) -> None:
    raw = canon(amazon.load(CFG, amazon_dir))
    assert_frame_equal(raw.interactions, rated())  # ts = (t * 1000 + 999) ms // 1000 = t s
    assert_frame_equal(raw.items, items(
        ["Lip Balm. Soft Vegan. Daily care.. Lips, Balm. Acme", "Serum", 'Brush, "pro". B', ""],
        image_path=[str(amazon_dir / "images" / "10.jpg"), None, None, None],
        category=["Beauty", "Beauty", None, None]))


def test_microlens_clicks_auto_seconds(microlens_dir: Path) -> None:
    raw = canon(microlens.load(CFG, microlens_dir))
    # "auto": 100000 < 1e11, so these are seconds.
    want = rated().drop("rating").with_columns(pl.lit(1, dtype=pl.Int8).alias("label"),
                                               pl.col("ts") * 1000)
    assert_frame_equal(raw.interactions, want)
    assert_frame_equal(raw.items, items(["Cat video", "Dance, dance", "Cooking", ""],
                                        image_path=[None, str(microlens_dir / "MicroLens-50k_covers" / "20.jpg"),
                                                    None, None]))


def test_microlens_ms_unit(microlens_dir: Path) -> None:
    cfg = DataConfig(microlens=DataConfig().microlens.__class__(ts_unit="ms"))
    raw = canon(microlens.load(cfg, microlens_dir))
    assert raw.interactions["ts"].to_list() == [100, 200, 150, 150, 300]


def test_generic_csv_and_parquet(generic_dir: Path) -> None:
    raw = canon(generic.load(CFG, generic_dir))
    assert_frame_equal(raw.interactions, rated())
    assert_frame_equal(raw.items, items(["Toy Story", 'Heat, "the" movie', "Suspects", ""]))
    pl.read_csv(generic_dir / "interactions.csv").write_parquet(generic_dir / "i.parquet")
    cfg = DataConfig(generic=DataConfig().generic.__class__(interactions="i.parquet"))
    assert_frame_equal(canon(generic.load(cfg, generic_dir)).interactions, rated())


def test_generic_label_column_and_ts_format(generic_dir: Path) -> None:
    (generic_dir / "interactions.csv").write_text("u,i,when,clicked\na,10,2020-01-01 00:00:10,1\nb,20,2020-01-01 00:00:00,0\n")
    g = DataConfig().generic.__class__(user_col="u", item_col="i", ts_col="when", ts_format="%Y-%m-%d %H:%M:%S",
                                       rating_col="", label_col="clicked")
    raw = canon(generic.load(DataConfig(generic=g), generic_dir))
    assert raw.interactions.to_dicts() == [{"user_id": "a", "item_id": "10", "ts": 1577836810, "label": 1},
                                           {"user_id": "b", "item_id": "20", "ts": 1577836800, "label": 0}]


@pytest.mark.parametrize("threshold,labels", [(4.0, [1, 0, 1, 0, 0]), (3.0, [1, 1, 1, 0, 0])])
def test_label_threshold(recbole_dir: Path, threshold: float, labels: list[int]) -> None:
    raw = movielens.load_100k(DataConfig(label_threshold=threshold), recbole_dir)
    assert raw.interactions["label"].to_list() == labels


def test_kuairand_standard_logs(kuairand_dir: Path) -> None:
    raw = canon(kuairand.load(CFG, kuairand_dir))
    assert_frame_equal(raw.interactions, rated().drop("rating"))  # ts = (t * 1000 + 999) ms // 1000 = t s
    assert_frame_equal(raw.items, items(["tags: 12, 65. type: NORMAL. upload: ShortImport",
                                         "tags: 8. type: AD. upload: LongImport",
                                         "type: NORMAL. upload: ShortImport", ""],
                                        category=["12", "8", None, None]))


def test_kuairand_label_signal_and_random_test(kuairand_dir: Path) -> None:
    cfg = DataConfig(kuairand=KuaiRandConfig(label="long_view", test_on_random=True))
    raw = canon(kuairand.load(cfg, kuairand_dir))
    assert raw.interactions["test_only"].to_list() == [False] * 5 + [True, True]
    assert raw.interactions["label"].to_list() == [1, 0, 1, 0, 0, 1, 0]  # long_view = is_click in the fixture
    split = SplitConfig(cold_item_frac=0.0, val_frac=0.5)
    p = build_prepared(raw, dataclasses.replace(cfg, split=split), "fp")
    # the random log is the test split; the standard logs feed train and val only (test_frac taken as 0)
    assert p.test.select("user_idx", "ts", "label").rows() == [(0, 400, 1), (1, 500, 0)]
    assert p.train.height + p.val.height == 5
    assert p.test["hist_item_idx"].to_list() == [[0], [0]]  # positives before: user 1 item 10; user 2 item 10


def test_kuairand_27k_parts(kuairand_dir: Path) -> None:
    for k, name in enumerate(kuairand.log_names("pure")):
        stem = name.removesuffix("_pure.csv")
        header = (kuairand_dir / name).read_text().splitlines()[0]
        (kuairand_dir / name).rename(kuairand_dir / f"{stem}_27k_part1.csv")
        (kuairand_dir / f"{stem}_27k_part2.csv").write_text(
            f"{header}\n9,10,20220421,400,{900_000 + k * 1000},1,0,0,0,0,0,1,1510,10440,0,0,0,0,1\n")
    (kuairand_dir / "video_features_basic_pure.csv").rename(kuairand_dir / "video_features_basic_27k.csv")
    raw = canon(kuairand.load(DataConfig(kuairand=KuaiRandConfig(variant="27k")), kuairand_dir))
    assert raw.interactions.height == 7 and raw.interactions["user_id"].to_list().count("9") == 2


def test_kuairec(kuairec_dir: Path) -> None:
    raw = canon(kuairec.load(CFG, kuairec_dir))
    assert_frame_equal(raw.interactions, rated().drop("rating"))
    assert_frame_equal(raw.items, items(["猫咪, 日常. 萌宠. 宠物 > 猫", "做饭. 封面字. 美食", "旅行. 旅行, 风景. 旅游", ""],
                                        category=["宠物", "美食", "旅游", None]))


def test_kuairec_threshold_small_matrix_and_missing_times(kuairec_dir: Path) -> None:
    (kuairec_dir / "big_matrix.csv").rename(kuairec_dir / "small_matrix.csv")
    with (kuairec_dir / "small_matrix.csv").open("a") as f:
        f.write("3,10,1000,10000,,,,0.1\n")  # no time: dropped, counted
    cfg = DataConfig(kuairec=KuaiRecConfig(matrix="small", threshold=1.0))
    with pytest.warns(DataWarning, match="dropped 1 rows with no timestamp"):
        raw = canon(kuairec.load(cfg, kuairec_dir))
    assert raw.interactions["label"].to_list() == [1, 1, 1, 0, 1]
