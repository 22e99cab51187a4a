"""Strict config loading: every error names the dotted path; overrides are typed by their field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from benchmark.core.configlib import (
    apply_overrides,
    canonical_json,
    flatten,
    from_mapping,
    read_toml,
    stable_hash,
)
from benchmark.core.errors import ConfigError


@dataclass(frozen=True)
class Sim:
    search: Literal["hard", "soft"] = "hard"
    prefix_depth: int = 1


@dataclass(frozen=True)
class Rank:
    epochs: int = 5
    lr: float = 1e-3
    fused: bool = False
    models: tuple[str, ...] = ("dlrm",)
    seeds: tuple[int, ...] = (0,)
    note: str | None = None
    sim: Sim = field(default_factory=Sim)


@dataclass(frozen=True)
class Root:
    name: str  # required
    rank: Rank = field(default_factory=Rank)


def test_valid_mapping_builds_typed_dataclasses() -> None:
    cfg = from_mapping(Root, {"name": "s", "rank": {"epochs": 3, "lr": 1, "models": ["din", "sim"],
                                                    "sim": {"search": "soft"}}})
    assert cfg.rank.epochs == 3 and cfg.rank.lr == 1.0 and isinstance(cfg.rank.lr, float)
    assert cfg.rank.models == ("din", "sim") and cfg.rank.sim == Sim("soft", 1)


def test_unknown_key_names_dotted_path_and_suggests() -> None:
    with pytest.raises(ConfigError, match=r"rank\.sim\.prefx_depth: unknown key \(did you mean 'rank\.sim\.prefix_depth'\?\)"):
        from_mapping(Root, {"name": "s", "rank": {"sim": {"prefx_depth": 2}}})


def test_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError, match=r"^bogus: unknown key"):
        from_mapping(Root, {"name": "s", "bogus": 1})


@pytest.mark.parametrize(
    ("rank", "pattern"),
    [
        ({"epochs": "3"}, r"rank\.epochs: expected an integer, got '3' \(str\)"),
        ({"epochs": True}, r"rank\.epochs: expected an integer, got True"),
        ({"epochs": 2.5}, r"rank\.epochs: expected an integer"),
        ({"lr": "fast"}, r"rank\.lr: expected a number"),
        ({"fused": 1}, r"rank\.fused: expected a boolean"),
        ({"models": "dlrm"}, r"rank\.models: expected a list of a string"),
        ({"seeds": [0, "1"]}, r"rank\.seeds\[1\]: expected an integer"),
        ({"sim": 3}, r"rank\.sim: expected a table"),
        ({"note": 3}, r"rank\.note: expected a string or none"),
    ],
)
def test_wrong_types_name_dotted_path(rank: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        from_mapping(Root, {"name": "s", "rank": rank})


def test_out_of_set_literal() -> None:
    with pytest.raises(ConfigError, match=r"rank\.sim\.search: expected one of 'hard', 'soft', got 'fuzzy'"):
        from_mapping(Root, {"name": "s", "rank": {"sim": {"search": "fuzzy"}}})


def test_missing_required_field() -> None:
    with pytest.raises(ConfigError, match=r"^name: missing required field \(a string\)"):
        from_mapping(Root, {})


def test_missing_file_and_toml_syntax_error_with_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        read_toml(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('[rank]\nepochs = 3\nlr = = 1\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML: .*line 3"):
        read_toml(bad)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("rank.epochs=7", {"epochs": 7}),
        ("rank.lr=0.5", {"lr": 0.5}),
        ("rank.lr=2", {"lr": 2.0}),
        ("rank.fused=true", {"fused": True}),
        ("rank.fused=0", {"fused": False}),
        ("rank.models=din,sim", {"models": ["din", "sim"]}),
        ("rank.models=[\"din\"]", {"models": ["din"]}),
        ("rank.seeds=[1, 2]", {"seeds": [1, 2]}),
        ("rank.seeds=3,4", {"seeds": [3, 4]}),
        ("rank.note=123", {"note": "123"}),
        ("rank.note=none", {"note": None}),
        ("rank.sim.search=soft", {"sim": {"search": "soft"}}),
    ],
)
def test_override_parsed_with_field_type(override: str, expected: dict) -> None:
    raw = apply_overrides(Root, {"name": "s"}, [override])
    assert raw == {"name": "s", "rank": expected}
    from_mapping(Root, raw)  # and the result validates


def test_override_keeps_existing_values_and_last_wins() -> None:
    raw = apply_overrides(Root, {"name": "s", "rank": {"epochs": 2, "lr": 0.1}}, ["rank.epochs=3", "rank.epochs=4"])
    assert raw == {"name": "s", "rank": {"epochs": 4, "lr": 0.1}}


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("rank.epochs", r"expected KEY=VALUE"),
        ("rank.epoch=3", r"unknown key 'rank\.epoch' \(did you mean 'rank\.epochs'\?\)"),
        ("rank.epochs=three", r"rank\.epochs: expected an integer, got 'three'"),
        ("rank.sim.search=fuzzy", r"rank\.sim\.search: expected one of 'hard', 'soft'"),
        ("rank.sim=1", r"rank\.sim: is a table"),
        ("rank.epochs.x=1", r"'rank\.epochs' is not a table"),
        ("rank.fused=maybe", r"rank\.fused: expected a boolean"),
    ],
)
def test_bad_overrides(override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        apply_overrides(Root, {"name": "s"}, [override])


def test_canonical_json_and_hash_are_stable() -> None:
    a = from_mapping(Root, {"name": "s", "rank": {"lr": 0.1, "epochs": 3}})
    b = from_mapping(Root, {"rank": {"epochs": 3, "lr": 0.1}, "name": "s"})
    assert canonical_json(a) == canonical_json(b)
    assert stable_hash(a) == stable_hash(b)
    # a pinned value: the hash must not drift between Python runs or versions (no id(), no set order)
    assert canonical_json(Sim()) == '{"prefix_depth":1,"search":"hard"}'
    assert stable_hash(Sim()) == stable_hash({"search": "hard", "prefix_depth": 1})
    c = from_mapping(Root, {"name": "s", "rank": {"lr": 0.1, "epochs": 4}})
    assert stable_hash(a) != stable_hash(c)
    assert stable_hash(a.rank.sim) == stable_hash(c.rank.sim)  # slices hash independently


def test_flatten_for_params() -> None:
    flat = flatten(from_mapping(Root, {"name": "s"}))
    assert flat["rank.sim.search"] == "hard" and flat["rank.models"] == '["dlrm"]' and flat["name"] == "s"
