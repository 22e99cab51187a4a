"""Exporting a prepared split for other systems: parquet, or RecBole atomic files (so a peer library trains on
exactly our rows and features; see docs/peer-parity.md)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from benchmark.core.errors import ConfigError, DataError
from benchmark.data.history import build_history_recbole
from benchmark.data.prepared import PreparedData


def _with_ids(data: PreparedData, df: pl.DataFrame) -> pl.DataFrame:
    return (df.join(data.users.select("user_idx", "user_id"), on="user_idx", maintain_order="left")
            .join(data.items.select("item_idx", "item_id"), on="item_idx", maintain_order="left"))


def export(data: PreparedData, out: Path, fmt: str, *, history_len: int = 0) -> None:
    """parquet: {train,val,test}.parquet (ids, idx, ts, label[, rating], history), items, users, stats.json.

    recbole: RecBole atomic files for `benchmark_filename: [train, valid, test]`, raw ids as tokens
    (see `write_recbole`). history_len > 0 (recbole only) adds RecBole's sequential history.
    """
    if history_len < 0 or (history_len and fmt != "recbole"):
        raise ConfigError(f"--history-len: expected 0, or T > 0 with --format recbole; got {history_len} "
                          f"with --format {fmt}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{out}: cannot create the output folder ({e.strerror})") from None
    if fmt == "recbole":
        write_recbole(data, out, history_len)
        return
    for name, df in {"train": data.train, "val": data.val, "test": data.test}.items():
        _with_ids(data, df).write_parquet(out / f"{name}.parquet")
    data.items.write_parquet(out / "items.parquet")
    data.users.write_parquet(out / "users.parquet")
    (out / "stats.json").write_text(json.dumps({"name": data.name, "fingerprint": data.fingerprint,
                                                **data.stats}, indent=1, sort_keys=True))


def _field(expr: pl.Expr) -> pl.Expr:
    """A token: atomic files are tab- and line-delimited."""
    return expr.fill_null("").str.replace_all(r"[\t\r\n]+", " ")


def _seq(expr: pl.Expr) -> pl.Expr:
    """A token_seq from List(Utf8): RecBole splits on " ", so spaces inside a token become "_"."""
    return expr.list.eval(pl.element().str.replace_all(r"\s+", "_")).list.join(" ")


def write_recbole(data: PreparedData, out: Path, history_len: int = 0) -> None:
    """RecBole atomic files (tab-separated, header `name:type`; `seq_separator` " "):

    <name>.{train,valid,test}.inter   user_id:token  item_id:token  timestamp:float  label:float
                                      [rating:float] [item_id_list:token_seq (history_len > 0)]
    <name>.item   item_id:token  text:token_seq  release_year:token ("" = unknown)  genre:token_seq
    <name>.user   user_id:token  [one :token column per user feature, e.g. age, gender, occupation]

    Rows in the order of the prepared frames, (user_idx, ts, item_idx). item_id_list = RecBole's own
    sequential history (`history.build_history_recbole` over all three splits): a RecBole config needs
    `alias_of_item_id: [item_id_list]`, and models that should not see it leave it out of `load_col`.
    """
    parts = {"train": data.train, "valid": data.val, "test": data.test}
    hist = None
    if history_len > 0:
        log = pl.concat([df.select("user_idx", "ts", "item_idx") for df in parts.values()])
        hist = build_history_recbole(log["user_idx"].to_numpy(), log["ts"].to_numpy(),
                                     log["item_idx"].to_numpy(), history_len)
    ids = data.items.sort("item_idx")["item_id"]
    start = 0
    for suffix, df in parts.items():
        cols = [pl.col("user_id").alias("user_id:token"), pl.col("item_id").alias("item_id:token"),
                pl.col("ts").alias("timestamp:float"), pl.col("label").cast(pl.Float32).alias("label:float")]
        if "rating" in df.columns:
            cols.append(pl.col("rating").alias("rating:float"))
        frame = _with_ids(data, df)
        if hist is not None:
            h = hist.slice(start, df.height)
            frame = frame.with_columns(h.list.eval(pl.element().replace_strict(
                pl.Series(range(len(ids))), ids, return_dtype=pl.Utf8)).alias("hist"))
            cols.append(pl.col("hist").list.join(" ").alias("item_id_list:token_seq"))
        start += df.height
        frame.select(cols).write_csv(out / f"{data.name}.{suffix}.inter", separator="\t", quote_style="never")
    data.items.select(pl.col("item_id").alias("item_id:token"), _field(pl.col("text")).alias("text:token_seq"),
                      _field(pl.col("year")).alias("release_year:token"), _seq(pl.col("genres")).alias("genre:token_seq")
                      ).write_csv(out / f"{data.name}.item", separator="\t", quote_style="never")
    feats = [c for c in data.users.columns if c not in ("user_idx", "user_id")]
    data.users.select(pl.col("user_id").alias("user_id:token"), *[_field(pl.col(c)).alias(f"{c}:token") for c in feats]
                      ).write_csv(out / f"{data.name}.user", separator="\t", quote_style="never")
