"""MovieLens loaders: ML-100K (RecBole atomic files or the GroupLens `ml-100k/` folder), ML-1M
(`::`-separated .dat, latin-1) and ML-latest / 20M / 25M / 32M (ratings.csv, movies.csv, tags.csv).

Item text = title + year + genres (+ the item's most frequent tags for the csv releases), the
same wording for every release so encoders see one format:  "Toy Story (1995). Genres: Animation, Comedy".

Year and genres are also separate item columns (features for peers and the metadata baseline):
    year    Utf8        four digits ("1995"), "" when the source has none or something else
                        (ML-100K item 267's release_year is "unkonwn"); RecBole's ML-100K falls back
                        to the title's "(1995)" where release_year is not a year
    genres  List(Utf8)  the source's genre names, stripped, unique, sorted by code point; [] when none
                        is known: ML-100K's "unknown" flag and ML-latest's "(no genres listed)" are not
                        genres. Names are the release's own ("Children's" in 100K/1M, "Children" in latest).
The text keeps the source's wording and order (it still says "Genres: unknown" for those two items).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from benchmark.config.data import DataConfig
from benchmark.core.errors import DataError
from benchmark.data import cards
from benchmark.data.schema import (
    RawData,
    label_from_rating,
    parse_float,
    parse_int,
    read_csv_strings,
    read_text,
    require_columns,
    require_path,
)

CARD_100K, CARD_1M, CARD_LATEST = "movielens-100k", "movielens-1m", "movielens-latest"
RECBOLE_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
GROUPLENS_100K_FILES = ("u.data", "u.item", "u.user")
GROUPLENS_100K_ENCODINGS = {"u.item": "latin-1"}  # used only when the card is absent; the card decides
ML1M_FILES = ("ratings.dat", "movies.dat", "users.dat")
ML_GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                  "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                  "Romance", "Sci-Fi", "Thriller", "War", "Western")
# ML-1M README: occupation codes 0..20.
ML1M_OCCUPATIONS = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
                    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer")
NOT_GENRES = ("", "unknown", "(no genres listed)")  # placeholders for "no genre known"
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


def item_text(title: pl.Expr, year: pl.Expr, genres: pl.Expr) -> pl.Expr:
    """"Title (Year). Genres: A, B" with the year and genre parts omitted when empty."""
    year_part = pl.when(year.str.len_chars() > 0).then(pl.lit(" (") + year + pl.lit(")")).otherwise(pl.lit(""))
    genre_part = pl.when(genres.str.len_chars() > 0).then(pl.lit(". Genres: ") + genres).otherwise(pl.lit(""))
    return (title.str.strip_chars() + year_part + genre_part).str.strip_chars().alias("text")


def year_column(year: pl.Expr) -> pl.Expr:
    """The `year` column: four digits after stripping, else ""."""
    y = year.fill_null("").str.strip_chars()
    return pl.when(y.str.contains(r"^\d{4}$")).then(y).otherwise(pl.lit("")).alias("year")


def genres_column(genres: pl.Expr) -> pl.Expr:
    """The `genres` column from a List(Utf8) of names: stripped, no "", "unknown" or
    "(no genres listed)", unique, sorted."""
    names = genres.fill_null([]).list.eval(pl.element().str.strip_chars())
    names = names.list.eval(pl.element().filter(~pl.element().is_in(list(NOT_GENRES))))
    return names.list.unique().list.sort().cast(pl.List(pl.Utf8)).alias("genres")


def split_title_year(title: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """GroupLens titles carry the year: "Toy Story (1995)" -> ("Toy Story", "1995")."""
    year = title.str.extract(_YEAR.pattern, 1).fill_null("")
    return title.str.replace(_YEAR.pattern, "").str.strip_chars(), year


def _interactions(df: pl.DataFrame, path: Path, cfg: DataConfig, cols: tuple[str, str, str, str]) -> pl.DataFrame:
    u, i, r, t = cols
    require_columns(df, path, list(cols))
    df = parse_float(df, r, path, out="rating")
    df = parse_int(df, t, path, what="an integer unix timestamp", out="ts")
    return df.select(pl.col(u).str.strip_chars().alias("user_id"), pl.col(i).str.strip_chars().alias("item_id"),
                     "ts", label_from_rating(pl.col("rating"), cfg.label_threshold), "rating", "line")


# ---------------------------------------------------------------- ML-100K
def files_100k(root: Path) -> list[Path]:
    """RecBole atomic files when present, else the GroupLens folder (u.data, u.item, u.user)."""
    require_path(root, "MovieLens-100K folder", "expected RecBole ml-100k.{inter,item,user} or GroupLens u.data")
    hint = "see datasets/movielens-100k/README.md"
    if (root / RECBOLE_FILES[0]).exists():
        return [require_path(root / f, "file", hint) for f in RECBOLE_FILES]
    if (root / GROUPLENS_100K_FILES[0]).exists():
        return [require_path(root / f, "file", hint) for f in GROUPLENS_100K_FILES]
    raise DataError(f"{root}: missing file ml-100k.inter (RecBole) or u.data (GroupLens ml-100k/); "
                    f"see datasets/movielens-100k/README.md")


def load_100k(cfg: DataConfig, root: Path) -> RawData:
    paths = files_100k(root)
    if paths[0].name == RECBOLE_FILES[0]:
        return _load_recbole(cfg, *paths)
    return _load_grouplens_100k(cfg, *paths)


def _recbole_frame(path: Path) -> pl.DataFrame:
    """RecBole atomic file: tab-separated, header `name:type`; strip the types."""
    df = read_csv_strings(path, sep="\t", quote=None, encoding=cards.encoding(CARD_100K, path.name, "utf-8"))
    return df.rename({c: c.split(":")[0] for c in df.columns})


def _recbole_year() -> pl.Expr:
    """release_year when it is four digits, else the title's trailing "(dddd)": RecBole's converter
    left item 1412's "(V)" suffix in the title ("... Giving (1995)") and put "V" in release_year."""
    release = pl.col("release_year").fill_null("").str.strip_chars()
    return pl.when(release.str.contains(r"^\d{4}$")).then(release).otherwise(
        split_title_year(pl.col("movie_title").fill_null(""))[1])


def _load_recbole(cfg: DataConfig, inter_p: Path, item_p: Path, user_p: Path) -> RawData:
    inter = _interactions(_recbole_frame(inter_p), inter_p, cfg, ("user_id", "item_id", "rating", "timestamp"))
    it = _recbole_frame(item_p)
    require_columns(it, item_p, ["item_id", "movie_title", "release_year", "class"])
    genre_list = pl.col("class").fill_null("").str.strip_chars().str.split(" ")
    items = it.select(pl.col("item_id").str.strip_chars(),
                      item_text(pl.col("movie_title").fill_null(""), pl.col("release_year").fill_null(""),
                                genre_list.list.join(", ")),
                      year_column(_recbole_year()), genres_column(genre_list))
    us = _recbole_frame(user_p)
    require_columns(us, user_p, ["user_id", "age", "gender", "occupation"])
    users = us.select(pl.col("user_id").str.strip_chars(), "age", "gender", "occupation")
    return RawData(inter, items, users, str(inter_p))


def _load_grouplens_100k(cfg: DataConfig, data_p: Path, item_p: Path, user_p: Path) -> RawData:
    def enc(p: Path) -> str:
        return cards.encoding(CARD_100K, p.name, GROUPLENS_100K_ENCODINGS.get(p.name, "utf-8"))

    df = read_csv_strings(data_p, sep="\t", quote=None, columns=["user", "item", "rating", "ts"], encoding=enc(data_p))
    inter = _interactions(df, data_p, cfg, ("user", "item", "rating", "ts"))
    it = read_csv_strings(item_p, sep="|", quote=None, encoding=enc(item_p),
                          columns=["item_id", "title", "release", "video", "url", *ML_GENRES_100K])
    flags = [pl.when(pl.col(g) == "1").then(pl.lit(g)) for g in ML_GENRES_100K]
    title, year = split_title_year(pl.col("title").fill_null(""))
    genre_list = pl.concat_list(flags).list.drop_nulls()
    items = it.select(pl.col("item_id").str.strip_chars(), item_text(title, year, genre_list.list.join(", ")),
                      year_column(year), genres_column(genre_list))
    us = read_csv_strings(user_p, sep="|", quote=None, columns=["user_id", "age", "gender", "occupation", "zip"],
                          encoding=enc(user_p))
    return RawData(inter, items, us.select("user_id", "age", "gender", "occupation"), str(data_p))


# ---------------------------------------------------------------- ML-1M
def files_1m(root: Path) -> list[Path]:
    return [require_path(root / f, "file", "see datasets/movielens-1m/README.md") for f in ML1M_FILES[:2]] + (
        [root / ML1M_FILES[2]] if (root / ML1M_FILES[2]).exists() else [])


def _dat(path: Path, names: list[str]) -> pl.DataFrame:
    """`::`-separated lines, latin-1 per the card (polars separators are one byte, so split the lines here)."""
    encoding = cards.encoding(CARD_1M, path.name, "latin-1")
    lines = pl.Series("raw", read_text(path, encoding, f"'::'-separated {encoding} text").split("\n"))
    df = pl.DataFrame(lines).with_row_index("line", offset=1).with_columns(pl.col("line").cast(pl.Int64))
    df = df.filter(pl.col("raw").str.strip_chars().str.len_chars() > 0)
    parts = pl.col("raw").str.splitn("::", len(names))
    df = df.with_columns(parts.struct.rename_fields(names).alias("p")).unnest("p")
    bad = df[names[-1]].is_null()
    if bad.any():
        line = df.filter(bad)["line"][0]
        found = df.filter(bad)["raw"][0].count("::") + 1
        raise DataError(f"{path}: line {line}: expected {len(names)} '::'-separated fields ({'::'.join(names)}), "
                        f"found {found}")
    return df.drop("raw")


def load_1m(cfg: DataConfig, root: Path) -> RawData:
    paths = files_1m(root)
    inter = _interactions(_dat(paths[0], ["user", "item", "rating", "ts"]), paths[0], cfg,
                          ("user", "item", "rating", "ts"))
    mv = _dat(paths[1], ["item_id", "title", "genres"])
    title, year = split_title_year(pl.col("title"))
    genre_list = pl.col("genres").str.strip_chars().str.split("|")
    items = mv.select(pl.col("item_id").str.strip_chars(), item_text(title, year, genre_list.list.join(", ")),
                      year_column(year), genres_column(genre_list))
    users = None
    if len(paths) > 2:
        us = _dat(paths[2], ["user_id", "gender", "age", "occupation", "zip"])
        occ = pl.col("occupation").replace_strict({str(i): o for i, o in enumerate(ML1M_OCCUPATIONS)},
                                                  default=pl.col("occupation"))
        users = us.select("user_id", "age", "gender", occ)
    return RawData(inter, items, users, str(paths[0]))


# ---------------------------------------------------------------- ML-latest / 20M / 25M / 32M
def files_latest(root: Path) -> list[Path]:
    hint = "see datasets/movielens-latest/README.md"
    paths = [require_path(root / "ratings.csv", "file", hint), require_path(root / "movies.csv", "file", hint)]
    return paths + ([root / "tags.csv"] if (root / "tags.csv").exists() else [])


def load_latest(cfg: DataConfig, root: Path) -> RawData:
    paths = files_latest(root)
    def read(p: Path) -> pl.DataFrame:
        return read_csv_strings(p, encoding=cards.encoding(CARD_LATEST, p.name, "utf-8"))

    inter = _interactions(read(paths[0]), paths[0], cfg, ("userId", "movieId", "rating", "timestamp"))
    mv = read(paths[1])
    require_columns(mv, paths[1], ["movieId", "title", "genres"])
    genres = pl.col("genres").fill_null("").str.replace(r"^\(no genres listed\)$", "").str.replace_all(r"\|", ", ")
    title, year = split_title_year(pl.col("title").fill_null(""))
    items = mv.select(pl.col("movieId").str.strip_chars().alias("item_id"), item_text(title, year, genres),
                      year_column(year), genres_column(pl.col("genres").fill_null("").str.split("|")))
    if len(paths) > 2 and cfg.max_tags_per_item > 0:
        items = _join_tags(items, read(paths[2]), paths[2], cfg.max_tags_per_item)
    return RawData(inter, items, None, str(paths[0]))


def _join_tags(items: pl.DataFrame, tags: pl.DataFrame, path: Path, top: int) -> pl.DataFrame:
    """Append an item's `top` most frequent tags (lower-cased; ties alphabetical) to its text."""
    require_columns(tags, path, ["movieId", "tag"])
    per_item = (tags.select(pl.col("movieId").str.strip_chars().alias("item_id"),
                            pl.col("tag").fill_null("").str.strip_chars().str.to_lowercase())
                .filter(pl.col("tag") != "")
                .group_by("item_id", "tag").len()
                .sort(["item_id", "len", "tag"], descending=[False, True, False])
                .group_by("item_id", maintain_order=True).agg(pl.col("tag").head(top).str.join(", ").alias("tags")))
    return (items.join(per_item, on="item_id", how="left", maintain_order="left")
            .with_columns(pl.when(pl.col("tags").is_not_null())
                          .then(pl.col("text") + pl.lit(". Tags: ") + pl.col("tags"))
                          .otherwise(pl.col("text")).alias("text"))
            .drop("tags"))
