"""The `qarm-bench` command line. `main(argv) -> int`; importing this module does nothing.

Subcommands import their heavy dependencies (torch, torchrec, mlflow) only when they run, so
`qarm-bench --help` is instant and a config error is reported before anything is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Iterator, Sequence

from benchmark.core import __version__
from benchmark.core.errors import QarmBenchError

SELECT_EXAMPLES = """\
examples:
  qarm-bench select ablation-levels                   quantize.levels chosen on DLRM aligned_codes' validation AUC
  qarm-bench select ablation-codebook-size --model sim --metric logloss --json
  qarm-bench select select-levels-cold --slice cold --incumbent 3   L on validation's own cold items; 3 stays unless beaten
"""

EXAMPLES = """\
examples:
  qarm-bench run                                   the default suite (MovieLens-100K, all variants, 5 seeds)
  qarm-bench run --quick                           1 seed, fewer epochs: a first look in a few minutes
  qarm-bench run benchmark/configs/movielens-100k-global-temporal.toml
  qarm-bench run --set quantize.levels=4 --set quantize.codebook_size=128
  qarm-bench run --force codes                     rerun the codes stage and everything after it
  qarm-bench run synthetic-tiny --quiet            errors and the final summary line only
  qarm-bench run synthetic-tiny --nproc-per-node 2  the rank stage and alignment on 2 ranks (torchrun)
  qarm-bench plan benchmark/configs/movielens-100k.toml
  qarm-bench report movielens-100k --json
  qarm-bench report movielens-100k --html          also report.html in runs/movielens-100k/latest/ (self-contained)
  qarm-bench report movielens-100k --run 20261205T172301Z-3fa2c1   an earlier run of the suite
  qarm-bench compare movielens-100k runs/movielens-100k/20261205T172301Z-3fa2c1 --html compare.html
  qarm-bench select ablation-levels                a sweep's value chosen on validation AUC, its test figures once
  qarm-bench reference-results                     docs/reference-results.md from docs/reference/<suite>/
  qarm-bench ui                                    MLflow UI on 127.0.0.1 over runs/mlflow.db, with runs-view URLs
  qarm-bench data describe movielens-100k --json
  qarm-bench data export movielens-100k --out exported/ --format recbole
  qarm-bench codes export movielens-100k --out ids/  item id -> codes of every code set, with provenance
  qarm-bench perf quantize --json
  qarm-bench align-refs --probe-epochs 3           alignment vs frozen / U2I / content probe on held-out pairs
  qarm-bench align-select --grid align.lr=2e-3,5e-3  alignment settings chosen on validation pairs, test read once
"""


class _Parser(argparse.ArgumentParser):
    """argparse prints usage and exits 2 on a bad argument; keep that, but never a traceback."""


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", default=None,
                   help="suite TOML (default: the packaged movielens-100k suite)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field by its dotted path, e.g. --set rank.epochs=3 (repeatable)")
    p.add_argument("--quick", action="store_true", help="1 seed and fewer epochs, for a first look")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="qarm-bench",
        description="QARM-Bench: quantitative alignment (QARM) for multi-modal recommendation, end to end.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"qarm-bench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run a suite: data -> pairs -> alignment -> codes -> rankers -> report",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    _add_run_args(p)
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="rerun STAGE and every stage after it even if cached (repeatable)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars or status lines: only errors and the final summary line")
    importlib.import_module("benchmark.dist.launch").add_launch_arguments(p)

    p = sub.add_parser("plan", help="show the stages and (variant, model, seed) cells, and which are cached")
    _add_run_args(p)

    p = sub.add_parser("report", help="print (and rewrite) the report of a suite")
    p.add_argument("suite", nargs="?", default=None,
                   help="suite name (default: the only suite in --runs-dir, else the most recently run one)")
    p.add_argument("--runs-dir", default="runs", help="where suites live (default: runs)")
    p.add_argument("--run", default=None, metavar="ID",
                   help="the run to report (a folder name under runs/<suite>/; default: runs/<suite>/latest)")
    p.add_argument("--json", action="store_true", help="print the table as JSON rows")
    p.add_argument("--html", action="store_true",
                   help="also write report.html next to report.md: one self-contained page with the plots embedded")

    p = sub.add_parser("select", help="choose a sweep's value on validation rows, then read its test figures once",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SELECT_EXAMPLES)
    importlib.import_module("benchmark.report.select").add_arguments(p)

    p = sub.add_parser("compare", help="aligned_codes vs id_only / frozen / random / shuffled codes across runs: "
                                       "one table and one forest plot, from results.json")
    importlib.import_module("benchmark.report.compare").add_arguments(p)

    p = sub.add_parser("reference-results", help="write docs/reference-results.md from the committed reference runs "
                                                 "(docs/reference/<suite>/report.json + meta.json)")
    importlib.import_module("benchmark.report.reference").add_arguments(p)

    p = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 against the suite's store")
    p.add_argument("suite", nargs="?", default=None,
                   help="print the runs-view URL of this suite's experiment (default: of every experiment in the store)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--runs-dir", default="runs", help="where runs/mlflow.db lives (default: runs)")
    p.add_argument("--tracking-uri", default=None, help="store to serve (default: MLFLOW_TRACKING_URI or runs/mlflow.db)")

    p = sub.add_parser("data", help="describe or export a dataset")
    importlib.import_module("benchmark.data.cli").add_arguments(p)

    p = sub.add_parser("codes", help="export a suite's semantic IDs: item id -> codes and each code set's provenance")
    importlib.import_module("benchmark.engine.export").add_arguments(p)

    p = sub.add_parser("align-refs", help="alignment's held-out pair recall beside frozen, U2I and probe references",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=importlib.import_module("benchmark.engine.alignrefs").EXAMPLES)
    importlib.import_module("benchmark.engine.alignrefs").add_arguments(p)
    p = sub.add_parser("align-select", help="choose alignment settings on validation pairs; report the test pairs once",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=importlib.import_module("benchmark.engine.alignselect").EXAMPLES)
    importlib.import_module("benchmark.engine.alignselect").add_arguments(p)

    p = sub.add_parser("perf", help="micro-benchmarks, each side by side with its alternative")
    perf_sub = p.add_subparsers(dest="perf_name", metavar="NAME", required=True)
    from benchmark.perf import BENCHMARKS

    for name, help_text in BENCHMARKS.items():
        bp = perf_sub.add_parser(name, help=help_text)
        bp.add_argument("--json", action="store_true", help="print one JSON object with the figures")
        bp.set_defaults(perf_module=f"benchmark.perf.{name}")
        bp.set_defaults(perf_parser=bp)
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("run", "plan"):
        from benchmark.config.suite import sweep_configs

        # Every setting (of every sweep value) is checked before anything heavy is imported or run.
        runs = sweep_configs(args.config, args.overrides, args.quick)
        from benchmark.dist import launch as distributed
        from benchmark.engine import suite

        if args.command == "plan":
            from benchmark.engine.plan import main_plan

            return main_plan(args, runs)
        if distributed.wants_launch(args):  # --nproc-per-node N: the same command on N ranks, under torchrun
            from benchmark.core.runlock import suite_lock

            # the launcher holds the suite's lock for its ranks (on node 0: the node whose rank 0 writes)
            with suite_lock(runs[0][1].suite_dir) if args.node_rank == 0 else contextlib.nullcontext():
                return distributed.launch(args.argv, args)
        if distributed.in_worker():
            return distributed.worker_main(runs[0][1].suite.device,
                                           lambda world, device: suite.main_run(args, runs, world, device),
                                           suite_dir=runs[0][1].suite_dir)
        with quiet_console() if args.quiet else contextlib.nullcontext():
            return suite.main_run(args, runs)
    if args.command == "report":
        from benchmark.report.write import main_report

        return main_report(args)
    if args.command == "select":
        return importlib.import_module("benchmark.report.select").main_select(args)
    if args.command == "compare":
        return importlib.import_module("benchmark.report.compare").main_compare(args)
    if args.command == "reference-results":
        return importlib.import_module("benchmark.report.reference").main_reference(args)
    if args.command == "ui":
        from benchmark.tracking import ui

        return ui.main_ui(args)
    if args.command == "data":
        return importlib.import_module("benchmark.data.cli").run(args)
    if args.command == "perf":
        return importlib.import_module(args.perf_module).run(args)
    if args.command == "codes":
        return importlib.import_module("benchmark.engine.export").run(args)
    if args.command == "align-refs":
        return importlib.import_module("benchmark.engine.alignrefs").run(args)
    if args.command == "align-select":
        return importlib.import_module("benchmark.engine.alignselect").run(args)
    raise AssertionError(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    parser = build_parser()
    # Perf benchmarks own their flags: add the named one's before parsing.
    if len(argv) >= 2 and argv[0] == "perf":
        from benchmark.perf import BENCHMARKS

        if argv[1] in BENCHMARKS:
            _perf_parser(parser, argv[1])
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help/--version exit 0, bad usage exits 2
        return int(e.code or 0)
    if args.command is None:
        parser.print_help()
        return 0
    args.argv = argv
    try:
        return _dispatch(args)
    except QarmBenchError as e:
        return _user_error(e, args.debug)
    except KeyboardInterrupt:
        print("qarm-bench: interrupted; finished stages are kept, rerun to resume", file=sys.stderr)
        return 130
    except Exception as e:
        qarm_err = _qarm_error_types()
        if isinstance(e, qarm_err):
            return _user_error(e, args.debug)
        raise


def entry() -> int:
    """The `qarm-bench` console script and `python -m benchmark`: `main()`, then `gc.freeze()`, as the process is
    about to exit. Python's finalisation otherwise runs full collections over every object the run made (torch,
    transformers, MLflow, the data): 1.5-2 s of a `--quick` run's wall time, with nothing left to free; objects
    are still released, and atexit handlers (temporary folders, logging) still run. Not in `main()`, which tests
    and library users call in a process that goes on."""
    import gc

    rc = main()
    gc.freeze()
    return rc


SUMMARY_PREFIX = "Done."  # the run's final summary line (benchmark.engine.suite): the one line --quiet keeps


class _KeepSummary:
    """A text stream that passes on only the lines starting with SUMMARY_PREFIX (progress bars, status lines and the
    printed report are dropped)."""

    def __init__(self, out: object) -> None:
        self._out, self._buf, self._keep = out, "", False

    def write(self, text: str) -> int:
        self._buf += text
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            self._keep = line.startswith(SUMMARY_PREFIX)
            if self._keep:
                self._out.write(line + "\n")  # type: ignore[attr-defined]
        return len(text)

    def flush(self) -> None:
        self._out.flush()  # type: ignore[attr-defined]

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def quiet_console() -> Iterator[None]:
    """`run --quiet`: stdout and stderr keep only the final summary line; an error still reaches the console,
    printed by `main` after this block."""
    with contextlib.redirect_stdout(_KeepSummary(sys.stdout)), contextlib.redirect_stderr(_KeepSummary(sys.stderr)):
        yield


def _perf_parser(parser: argparse.ArgumentParser, name: str) -> None:
    perf_action = next(a for a in parser._subparsers._group_actions if a.dest == "command")  # type: ignore[union-attr]
    perf = perf_action.choices["perf"]
    sub_action = next(a for a in perf._subparsers._group_actions if a.dest == "perf_name")  # type: ignore[union-attr]
    importlib.import_module(f"benchmark.perf.{name}").add_arguments(sub_action.choices[name])


def _qarm_error_types() -> tuple[type[BaseException], ...]:
    """Library errors of qarm and recsys_models are user errors too (bad shapes, missing model dirs)."""
    types: list[type[BaseException]] = []
    for mod, name in (("qarm.errors", "QarmError"), ("recsys_models.errors", "RecsysModelError")):
        if mod in sys.modules:
            types.append(getattr(sys.modules[mod], name))
    return tuple(types)


def _user_error(e: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"qarm-bench: error: {e}", file=sys.stderr)
    if not debug:
        print("(run with --debug for a traceback)", file=sys.stderr)
    return 2
