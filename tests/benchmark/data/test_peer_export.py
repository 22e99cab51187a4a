"""Peer parity (issue 11 point 3): item year/genres columns, the RecBole export's .user / .item / history
fields (exact file contents on a hand-built PreparedData), and RecBole's history rule vs its slow reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.cli import main
from benchmark.config.data import DataConfig
from benchmark.core.errors import ConfigError
from benchmark.data import movielens
from benchmark.data.export import export
from benchmark.data.history import build_history_recbole, build_history_recbole_slow
from benchmark.data.prepared import PreparedData

from .conftest import write


def test_year_and_genres_are_cleaned() -> None:
    df = pl.DataFrame({"y": [" 1995 ", "unkonwn", "V", None, "19955"],
                       "g": [["Thriller", " Crime", "Thriller"], ["unknown"], ["(no genres listed)", ""], None, []]})
    out = df.select(movielens.year_column(pl.col("y")), movielens.genres_column(pl.col("g")))
    assert out.schema == pl.Schema({"year": pl.Utf8, "genres": pl.List(pl.Utf8)})
    assert out["year"].to_list() == ["1995", "", "", "", ""]  # four digits or nothing
    assert out["genres"].to_list() == [["Crime", "Thriller"], [], [], [], []]  # stripped, unique, sorted


def test_recbole_layout_year_falls_back_to_title(tmp_path: Path) -> None:
    # ML-100K item 1412 in RecBole's files: the "(V)" suffix left "(1995)" in the title, "V" in release_year.
    d = tmp_path / "rb"
    write(d / "ml-100k.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1412\t4\t10\n")
    write(d / "ml-100k.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
          "1412\tLand Before Time III (1995)\tV\tChildren's Animation\n267\tunkonwn\tunkonwn\tunknown\n")
    write(d / "ml-100k.user", "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
          "1\t24\tM\twriter\t1\n")
    items = movielens.load_100k(DataConfig(verify_sha256=False), d).items
    assert items["year"].to_list() == ["1995", ""]
    assert items["genres"].to_list() == [["Animation", "Children's"], []]
    assert items["text"].to_list() == ["Land Before Time III (1995) (V). Genres: Children's, Animation",
                                       "unkonwn (unkonwn). Genres: unknown"]  # the text keeps the source's words


def tiny() -> PreparedData:
    """u1 rates 10 (t1, +), 20 (t2, -) in train and 30 (t3, -) in val; u2 rates 10 (t2, +) in train
    and 20, 30 at the SAME t4 in test. Rows sorted by (user_idx, ts, item_idx) as prepare leaves them."""
    def frame(rows: list[tuple[int, int, int, int, float]]) -> pl.DataFrame:
        return pl.DataFrame(rows, schema={"user_idx": pl.Int32, "item_idx": pl.Int32, "ts": pl.Int64,
                                          "label": pl.Int8, "rating": pl.Float32}, orient="row"
                            ).with_columns(pl.lit([], dtype=pl.List(pl.Int32)).alias("hist_item_idx"))
    items = pl.DataFrame({"item_idx": [0, 1, 2], "item_id": ["10", "20", "30"],
                          "text": ["Toy Story (1995). Genres: Animation, Comedy", "Heat\tthe\nmovie", ""],
                          "year": ["1995", "", "1999"], "genres": [["Animation", "Comedy"], [], ["Sci Fi"]]},
                         schema_overrides={"item_idx": pl.Int32, "genres": pl.List(pl.Utf8)})
    users = pl.DataFrame({"user_idx": [0, 1], "user_id": ["u1", "u2"], "age": ["24", "53"], "gender": ["M", "F"],
                          "occupation": ["writer", None]}, schema_overrides={"user_idx": pl.Int32})
    return PreparedData(train=frame([(0, 0, 1, 1, 5.0), (0, 1, 2, 0, 3.0), (1, 0, 2, 1, 4.0)]),
                        val=frame([(0, 2, 3, 0, 2.0)]), test=frame([(1, 1, 4, 1, 5.0), (1, 2, 4, 0, 1.0)]),
                        items=items, users=users, stats={}, fingerprint="f" * 64, name="tiny")


def lines(path: Path) -> list[str]:
    return path.read_text().split("\n")


def test_recbole_export_files_exactly(tmp_path: Path) -> None:
    export(tiny(), tmp_path, "recbole", history_len=2)
    head = "user_id:token\titem_id:token\ttimestamp:float\tlabel:float\trating:float\titem_id_list:token_seq"
    # history = the user's <= 2 earlier rows of any label in (ts, item) order, across splits; u2's 30 at
    # t4 sees 20 at the same t4 because 20 comes first in the file (RecBole's stable sort keeps it so).
    assert lines(tmp_path / "tiny.train.inter") == [head, "u1\t10\t1\t1.0\t5.0\t", "u1\t20\t2\t0.0\t3.0\t10",
                                                    "u2\t10\t2\t1.0\t4.0\t", ""]
    assert lines(tmp_path / "tiny.valid.inter") == [head, "u1\t30\t3\t0.0\t2.0\t10 20", ""]
    assert lines(tmp_path / "tiny.test.inter") == [head, "u2\t20\t4\t1.0\t5.0\t10", "u2\t30\t4\t0.0\t1.0\t10 20", ""]
    # text keeps its words (tabs and newlines become spaces); genre tokens are space-separated, so a
    # space inside a genre becomes "_"; an unknown year is an empty token.
    assert lines(tmp_path / "tiny.item") == [
        "item_id:token\ttext:token_seq\trelease_year:token\tgenre:token_seq",
        "10\tToy Story (1995). Genres: Animation, Comedy\t1995\tAnimation Comedy",
        "20\tHeat the movie\t\t", "30\t\t1999\tSci_Fi", ""]
    assert lines(tmp_path / "tiny.user") == ["user_id:token\tage:token\tgender:token\toccupation:token",
                                             "u1\t24\tM\twriter", "u2\t53\tF\t", ""]


def test_recbole_export_without_history_or_user_features(tmp_path: Path) -> None:
    data = tiny()
    data = PreparedData(**{**data.__dict__, "users": data.users.select("user_idx", "user_id")})
    export(data, tmp_path, "recbole")
    assert lines(tmp_path / "tiny.valid.inter") == [
        "user_id:token\titem_id:token\ttimestamp:float\tlabel:float\trating:float", "u1\t30\t3\t0.0\t2.0", ""]
    assert lines(tmp_path / "tiny.user") == ["user_id:token", "u1", "u2", ""]
    export(data, tmp_path / "T1", "recbole", history_len=1)
    assert lines(tmp_path / "T1" / "tiny.test.inter")[1:3] == ["u2\t20\t4\t1.0\t5.0\t10", "u2\t30\t4\t0.0\t1.0\t20"]


def test_history_len_needs_recbole_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="--history-len"):
        export(tiny(), tmp_path, "parquet", history_len=3)
    assert main(["data", "export", "synthetic", "--out", str(tmp_path / "o"), "--history-len", "-1",
                 "--format", "recbole", "--cache-dir", str(tmp_path / "c")]) == 2
    assert "--history-len" in capsys.readouterr().err


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.integers(0, 9)), max_size=50,
                unique=True), st.integers(0, 4))
def test_recbole_history_fast_equals_slow(rows: list[tuple[int, int, int]], T: int) -> None:
    a = np.array(rows, dtype=np.int64).reshape(-1, 3)  # (user, ts, item), unique like a deduplicated log
    args = (a[:, 0], a[:, 1], a[:, 2])
    assert build_history_recbole(*args, T=T).to_list() == build_history_recbole_slow(*args, T=T)


PEER_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "peer_recbole.py"


def test_peer_script_imports_no_project_package() -> None:
    # it runs in .peer-venv (numpy < 2, no torchrec, polars or mlflow): stdlib, recbole and its stack only
    import ast

    tree = ast.parse(PEER_SCRIPT.read_text())
    roots = {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    roots |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert roots <= {"__future__", "argparse", "json", "os", "platform", "statistics", "sys", "time", "warnings",
                     "pathlib", "ast", "recbole", "torch", "pandas"}, roots


def test_peer_settings_features_and_history() -> None:
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location("peer_recbole", PEER_SCRIPT)
    assert spec is not None and spec.loader is not None
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)  # stdlib only at import time: recbole is imported inside the runners
    args = argparse.Namespace(data="d", epochs=30, stopping_step=3, embedding_size=16, history_len=50,
                              din_mlp=[128, 64])
    fm, din = (peer.settings(m, args, 0, Path("w")) for m in ("DeepFM", "DIN"))
    for cfg in (fm, din):
        assert cfg["benchmark_filename"] == ["train", "valid", "test"] and cfg["LABEL_FIELD"] == "label"
        assert cfg["load_col"]["user"] == ["user_id", "age", "gender", "occupation"]
        assert cfg["load_col"]["item"] == ["item_id", "release_year", "genre"]  # never the text
        assert cfg["eval_args"]["mode"] == "labeled" and cfg["valid_metric"] == "AUC"
        assert cfg["threshold"] is None and cfg["train_neg_sample_args"] is None
    assert fm["load_col"]["inter"] == ["user_id", "item_id", "label"]  # no rating (the label's source), no ts
    assert din["load_col"]["inter"] == ["user_id", "item_id", "label", "item_id_list"]
    assert din["alias_of_item_id"] == ["item_id_list"] and din["MAX_ITEM_LIST_LENGTH"] == 50


def test_importing_the_peer_script_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import os

    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    spec = importlib.util.spec_from_file_location("peer_recbole_2", PEER_SCRIPT)
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ  # main() sets it, for RecBole's reload only
