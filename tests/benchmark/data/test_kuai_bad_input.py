"""KuaiRand and KuaiRec bad input beyond the file-level matrix of test_bad_files.py: a missing file, a missing
column, values of the wrong type: a DataError naming the file, line and column; nothing cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.config.data import KuaiRandConfig, KuaiRecConfig
from benchmark.core.errors import DataError
from benchmark.data import DataConfig, DataWarning, SplitConfig, prepare


def cfg(name: str, root: Path, **kw) -> DataConfig:
    return DataConfig(dataset=name, root=str(root), split=SplitConfig(cold_item_frac=0.0), **kw)  # type: ignore[arg-type]


def run_bad(c: DataConfig, cache: Path, *needles: str) -> str:
    with pytest.raises(DataError) as e:
        prepare(c, cache_dir=cache)
    msg = str(e.value)
    for n in needles:
        assert n in msg, msg
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file() or p.name.startswith(".")]
    return msg


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_kuairand_missing_files(tmp_path: Path, kuairand_dir: Path) -> None:
    run_bad(cfg("kuairand", kuairand_dir, kuairand=KuaiRandConfig(variant="1k")), tmp_path / "c",
            "log_standard_4_08_to_4_21_1k.csv: missing file", "datasets/kuairand/README.md")
    (kuairand_dir / "log_random_4_22_to_5_08_pure.csv").unlink()
    prepare(cfg("kuairand", kuairand_dir), cache_dir=tmp_path / "c2")  # not read without test_on_random
    run_bad(cfg("kuairand", kuairand_dir, kuairand=KuaiRandConfig(test_on_random=True)), tmp_path / "c3",
            "log_random_4_22_to_5_08_pure.csv: missing file")


@pytest.mark.parametrize("target,old,new,needles", [
    ("log_standard_4_08_to_4_21_pure.csv", "time_ms", "time", ["missing column(s) ['time_ms']"]),
    ("log_standard_4_08_to_4_21_pure.csv", "200999", "yesterday", ["line 3", "'time_ms'", "'yesterday'"]),
    ("log_standard_4_22_to_5_08_pure.csv", "150999,0", "150999,2", ["line 2", "'is_click'", "expected 0 or 1"]),
    ("log_standard_4_22_to_5_08_pure.csv", "\n3,40,", "\n3,99,", ["line 3", "'99'", "not in the video feature"]),
    ("video_features_basic_pure.csv", "\n30,", "\nthirty,", ["line 4", "'video_id'", "'thirty'"]),
    ("video_features_basic_pure.csv", ",tag\n", ",tags\n", ["missing column(s) ['tag']"]),
])
def test_kuairand_bad_values(tmp_path: Path, kuairand_dir: Path, target: str, old: str, new: str,
                             needles: list[str]) -> None:
    edit(kuairand_dir / target, old, new)
    msg = run_bad(cfg("kuairand", kuairand_dir), tmp_path / "c", *needles)
    assert msg.startswith(f"{kuairand_dir / target}:"), msg


def test_kuairand_unknown_video_dropped_when_asked(tmp_path: Path, kuairand_dir: Path) -> None:
    edit(kuairand_dir / "log_standard_4_22_to_5_08_pure.csv", "\n3,40,", "\n3,99,")
    with pytest.warns(DataWarning, match="dropped 1 rows naming videos"):
        p = prepare(cfg("kuairand", kuairand_dir, on_unknown_item="drop"), cache_dir=tmp_path / "c")
    assert p.stats["impressions"] == 4


@pytest.mark.parametrize("target,old,new,needles", [
    ("big_matrix.csv", "watch_ratio", "ratio", ["missing column(s) ['watch_ratio']"]),
    ("big_matrix.csv", ",150.9,", ",noon,", ["line 5", "'timestamp'", "'noon'"]),
    ("big_matrix.csv", ",1.99\n", ",lots\n", ["line 6", "'watch_ratio'", "'lots'"]),
    ("big_matrix.csv", "\n3,40,", "\n3,99,", ["line 6", "'99'", "not in the item table"]),
    ("kuairec_caption_category.csv", "\n20,", "\n2 0,", ["line 3", "'video_id'", "'2 0'"]),
    ("kuairec_caption_category.csv", ",caption,", ",title,", ["missing column(s) ['caption']"]),
])
def test_kuairec_bad_values(tmp_path: Path, kuairec_dir: Path, target: str, old: str, new: str,
                            needles: list[str]) -> None:
    edit(kuairec_dir / target, old, new)
    msg = run_bad(cfg("kuairec", kuairec_dir), tmp_path / "c", *needles)
    assert msg.startswith(f"{kuairec_dir / 'big_matrix.csv' if 'item table' in msg else kuairec_dir / target}:"), msg


def test_kuairec_missing_matrix_and_no_times(tmp_path: Path, kuairec_dir: Path) -> None:
    run_bad(cfg("kuairec", kuairec_dir, kuairec=KuaiRecConfig(matrix="small")), tmp_path / "c",
            "small_matrix.csv: missing file", "datasets/kuairec/README.md")
    p = kuairec_dir / "big_matrix.csv"
    header, *rows = p.read_text().splitlines()
    p.write_text("\n".join([header, *(",".join(r.split(",")[:6] + ["", r.split(",")[7]]) for r in rows)]) + "\n")
    with pytest.warns(DataWarning, match="dropped 5 rows"):
        run_bad(cfg("kuairec", kuairec_dir), tmp_path / "c2", "big_matrix.csv: no row has a timestamp")


def test_cli_exits_2_naming_the_file(tmp_path: Path, kuairec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(kuairec_dir / "big_matrix.csv", ",1.99\n", ",lots\n")
    rc = main(["data", "describe", "kuairec", "--root", str(kuairec_dir), "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 2 and "big_matrix.csv: line 6" in err and "Traceback" not in err, err
    assert main(["data", "describe", "kuairand", "--root", str(tmp_path / "nowhere"),
                 "--cache-dir", str(tmp_path / "c")]) == 2
