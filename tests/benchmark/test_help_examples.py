"""Every example of every `--help` text runs (issue 23 point 7).

The examples are read from the help texts themselves (the top-level parser and each sub-command's), so a new
example is checked the day it is written. Each one must parse; then:
    run ...                  runs in `plan` form (same config, --set and --quick): every setting is checked and the
                             cells are listed, without training; --force names a real stage
    plan ..., data describe  run as written
    align-refs, codes export their config and --set are loaded as `run` would load them
    align-select             its config, --set and every grid value loaded as the command loads them
    report, ui, perf, data export   parse only (they need a finished run, a server, or minutes)
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from benchmark.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _sub_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                out += _sub_parsers(sub)
    return out


def help_examples() -> list[str]:
    """Every `qarm-bench ...` example line of every help text, without its trailing description."""
    found: list[str] = []
    for p in _sub_parsers(build_parser()):
        for line in p.format_help().splitlines():
            m = re.match(r"^\s+(qarm-bench\s.*?)(?:\s{2,}.*)?$", line)
            if m:
                found.append(m.group(1).strip())
    return list(dict.fromkeys(found))


def _argv(example: str) -> list[str]:
    argv = shlex.split(example)[1:]
    return [str(ROOT / a) if a.startswith("benchmark/configs/") else a for a in argv]


def test_the_help_texts_have_examples() -> None:
    examples = help_examples()
    assert len(examples) >= 15 and any(e.startswith("qarm-bench run --set") for e in examples)


@pytest.mark.parametrize("example", help_examples())
def test_every_help_example_runs(example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    argv = _argv(example)
    args = build_parser().parse_args(argv)  # a bad flag is SystemExit(2) here
    command = argv[0]
    if command in ("run", "plan"):
        from benchmark.itemside.stages import check_force

        check_force(getattr(args, "force", []))
        plan = ["plan", *([args.config] if args.config else []), *(f"--set={o}" for o in args.overrides),
                *(["--quick"] if args.quick else [])]
        assert main(plan) == 0, capsys.readouterr().err
    elif command == "data" and args.data_command == "describe":
        assert main(argv) == 0, capsys.readouterr().err
    elif command in ("align-refs", "codes"):
        from benchmark.config.suite import sweep_configs

        assert sweep_configs(args.config, args.overrides, getattr(args, "quick", False))
    elif command == "align-select":
        import itertools

        from benchmark.config.suite import load_config
        from benchmark.engine.alignselect import parse_grid

        grid = parse_grid(args.grid)
        for values in itertools.product(*(v for _, v in grid)):
            load_config(args.config, [*args.overrides, *(f"{k}={v}" for (k, _), v in zip(grid, values))])


def test_every_set_example_in_a_help_text_is_a_real_setting() -> None:
    """The `e.g. --set KEY=VALUE` hints of the flags' help (issue 23: `--set train.epochs=3` did not exist)."""
    from benchmark.config.suite import load_config

    hints = {m for p in _sub_parsers(build_parser()) for m in re.findall(r"--set\s+([a-z][\w.]*=[^\s)]+)", p.format_help())}
    assert hints
    for hint in hints:
        load_config("synthetic-tiny", [hint])
