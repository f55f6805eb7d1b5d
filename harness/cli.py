"""``python -m harness <verb>``: the command line.

    images  [--haproxy SPEC ...]            build what is missing (support + HAProxy images)
    run     --haproxy SPEC --scenario NAME  one cell, one table row
    matrix  FILE                            every cell of a matrix file, then the tables
    reproduce --a SPEC --b SPEC --scenario NAME   two versions, one verdict on one screen
    rerun   CELL_DIR                        repeat one cell from its folder, old vs new
    calibrate [FILE]                        close delays measured against known delays
    report  RUN_DIR                         rebuild report.md from a run folder (no Docker)
    compare RUN_A RUN_B                     run B's cells against run A's, with verdicts (no Docker)
    bisect  --good SPEC --bad SPEC --scenario NAME --signal TEXT   the first bad version or commit
    clean                                   remove anything a harness run left in Docker
    scenarios [NAME]                        the scenarios, their parameters and allowed values

Errors the user can fix exit with 2 and a message, never a traceback. Failed cells exit
with 1. With --fail-on (matrix, reproduce, report, compare), verdicts that match exit with 3
(EXIT_VERDICT): `--fail-on regression` on any regression, `--fail-on change` on any
regression, improvement or changed outcome; failed cells (1) take precedence.
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import docker
import requests

from harness import ROOT, bisect, calibration, images, results, runner, scenarios, spec, versions
from harness.compose import CommandLog
from harness.errors import CellError, HarnessError, ResultsError
from harness.progress import Progress
from harness.stack import Interrupted, interrupt_on_signals, remove_leftovers

DEFAULT_VERSIONS = ["debian:bullseye", "debian:bookworm", "debian:trixie"]
DEFAULT_MATRIX = ROOT / "matrices" / "default.yaml"
# The exit status of --fail-on: distinct from 1 (failed cells) and 2 (bad input).
EXIT_VERDICT = 3
FAIL_ON_HELP = (
    "exit with 3 when a verdict is a regression (regression), or a regression, an "
    "improvement or a changed outcome (change)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks with errors")
    verbs = parser.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("images", help="build the images a run needs")
    p.add_argument(
        "--haproxy",
        action="append",
        metavar="SPEC",
        help=f"version spec (repeatable); default: {' '.join(DEFAULT_VERSIONS)}",
    )

    p = verbs.add_parser("run", help="run one cell and print its row")
    p.add_argument("--haproxy", required=True, metavar="SPEC", help="e.g. debian:bookworm")
    p.add_argument("--scenario", default="smoke")
    p.add_argument("--duration", type=float, default=10, help="seconds of load [10]")
    p.add_argument("--users", type=int, default=20, help="Locust users, closed loop [20]")
    p.add_argument("--rate", type=float, help="open loop instead: requests per second")

    p = verbs.add_parser("matrix", help="run every cell of a matrix file")
    p.add_argument("file", nargs="?", type=Path, default=DEFAULT_MATRIX)
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="finish an interrupted run: only cells without a complete cell.json run",
    )
    p.add_argument("--fail-on", choices=["regression", "change"], help=FAIL_ON_HELP)

    p = verbs.add_parser("reproduce", help="compare two versions on one scenario, with a verdict")
    p.add_argument("--a", required=True, metavar="SPEC", help="baseline version spec")
    p.add_argument("--b", required=True, metavar="SPEC", help="candidate version spec")
    p.add_argument("--scenario", required=True)
    p.add_argument("--repetitions", type=int, default=3, help="cells per version [3]")
    p.add_argument("--fail-on", choices=["regression", "change"], help=FAIL_ON_HELP)

    p = verbs.add_parser("rerun", help="repeat one cell from its folder; old and new side by side")
    p.add_argument("cell_dir", type=Path)

    p = verbs.add_parser(
        "calibrate", help="check the close-delay measurements against known delays"
    )
    p.add_argument("file", nargs="?", type=Path, default=ROOT / "matrices" / "calibration.yaml")

    p = verbs.add_parser("report", help="rebuild a run's report from its folder")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--fail-on", choices=["regression", "change"], help=FAIL_ON_HELP)

    p = verbs.add_parser(
        "compare", help="compare two runs: matching cells of run B against run A, with verdicts"
    )
    p.add_argument("run_a", type=Path, help="the baseline run's folder")
    p.add_argument("run_b", type=Path, help="the run judged against it")
    p.add_argument("--fail-on", choices=["regression", "change"], help=FAIL_ON_HELP)

    p = verbs.add_parser("bisect", help="find the first bad release or commit between two")
    bisect.add_arguments(p)

    verbs.add_parser("clean", help="remove containers/networks/volumes left by harness runs")

    p = verbs.add_parser("scenarios", help="list the scenarios and their typed parameters")
    p.add_argument("name", nargs="?", help="one scenario, with every parameter")
    return parser


@contextmanager
def _damaged(path: Path | str) -> Iterator[None]:
    """Files the harness wrote but someone changed: say which, not where Python tripped."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        raise HarnessError(
            f"{path} (or a file beside it) is not what the harness wrote: {type(exc).__name__} "
            f"{exc}. Restore it from a copy, or run that cell or matrix again."
        ) from exc


def _report() -> ModuleType:
    # Imported when needed: its statistics pull in scipy, a second of start-up that
    # every command would otherwise pay, errors included.
    from harness import report

    return report


def _verdict_status(run_dir: Path, fail_on: str | None) -> int:
    """The one-line tally on stderr; EXIT_VERDICT when --fail-on matches a verdict."""
    return _fail_on(_report().read_verdicts(run_dir), fail_on)


def _fail_on(found: list[Any], fail_on: str | None) -> int:
    report = _report()
    print(report.tally(found), file=sys.stderr)
    hits = report.failing(found, fail_on)
    if hits:
        kinds = ", ".join(dict.fromkeys(c.verdict for c in hits))
        print(
            f"--fail-on {fail_on} matched {len(hits)} verdict(s): {kinds}",
            file=sys.stderr,
        )
        return EXIT_VERDICT
    return 0


def _run_plan(
    plan: spec.Plan,
    show_report: bool = True,
    run_dir: Path | None = None,
    fail_on: str | None = None,
) -> int:
    resume = run_dir is not None
    run_dir = run_dir or results.RESULTS_DIR / plan.cells[0].run_id
    progress = Progress()
    progress.step(f"run {run_dir.name}: {len(plan.cells)} cell(s), results in {run_dir}")
    with results.locked(run_dir):  # a second process (a --resume) is refused meanwhile
        try:
            records = runner.execute(plan, run_dir, progress, resume=resume)
        except KeyboardInterrupt:
            if (run_dir / "run.json").exists():
                print(
                    f"finished cells are kept in {run_dir}; to finish the run: make matrix "
                    f"RESUME={run_dir} (or python -m harness matrix --resume {run_dir})",
                    file=sys.stderr,
                )
            raise
        with results.writing(run_dir):
            text = _report().rebuild(run_dir)
    if show_report:
        print(text)
    print(f"report: {run_dir / 'report.md'} and report.html", file=sys.stderr)
    failed = [r["cell"] for r in records if r.get("status") != "ok"]
    if failed:
        print(
            f"{len(failed)} cell(s) failed: {', '.join(failed)} (see their commands.log)",
            file=sys.stderr,
        )
    verdict_status = _verdict_status(run_dir, fail_on)  # the tally: the run's last line
    return 1 if failed else verdict_status


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    interrupt_on_signals()
    try:
        if args.verb in ("run", "matrix", "reproduce", "calibrate"):
            results.check_writable()  # before anything starts
        if args.verb == "images":
            specs = [versions.parse(s) for s in (args.haproxy or DEFAULT_VERSIONS)]
            progress = Progress()
            built = images.ensure_images(
                specs, CommandLog(images.BUILD_DIR / "images.log"), progress.step
            )
            for hx in built.haproxy.values():
                print(f"{hx.spec.text:24} {hx.tag:44} HAProxy {hx.version}")
            for name, tag in built.support.items():
                print(f"{name:24} {tag}")
            return 0
        if args.verb == "run":
            load = spec.load_options(args.users, args.rate, args.duration)
            plan = spec.single(args.haproxy, args.scenario, results.new_run_id(args.scenario), load)
            return _run_plan(plan)
        if args.verb == "matrix":
            if args.resume:
                plan = runner.resume_plan(args.resume)
                run_dir = args.resume.absolute()  # it reaches `docker run --mount`
                results.check_mountable(run_dir, str(args.resume))
                return _run_plan(plan, run_dir=run_dir, fail_on=args.fail_on)
            plan = spec.load(args.file, results.new_run_id(args.file.stem))
            return _run_plan(plan, fail_on=args.fail_on)
        if args.verb == "reproduce":
            plan = spec.expand(
                {
                    "name": f"reproduce-{args.scenario}",
                    "description": f"{args.b} against {args.a} on {args.scenario}",
                    "versions": [args.a, args.b],
                    "baseline": args.a,
                    "repetitions": args.repetitions,
                    "scenarios": [{"name": args.scenario}],
                },
                results.new_run_id(f"reproduce-{args.scenario}"),
            )
            run_dir = results.RESULTS_DIR / plan.cells[0].run_id
            with results.locked(run_dir), results.writing(run_dir):
                runner.execute(plan, run_dir, Progress())
                _report().rebuild(run_dir)
            print(_report().verdict_screen(run_dir))
            return _verdict_status(run_dir, args.fail_on)
        if args.verb == "rerun":
            with _damaged(args.cell_dir / "cell.json"):
                old, new = runner.rerun(args.cell_dir.resolve(), Progress())
            print(_report().side_by_side(old, new))
            return 0 if new.get("status") == "ok" else 1
        if args.verb == "calibrate":
            plan = spec.load(args.file, results.new_run_id(args.file.stem))
            _run_plan(plan, show_report=False)
            records = results.cells(results.RESULTS_DIR / plan.cells[0].run_id)
            print(calibration.table(records))
            found = [p for r in records for p in calibration.problems(r)]
            for problem in found:
                print(f"out of tolerance: {problem}", file=sys.stderr)
            return 1 if found else 0
        if args.verb == "report":
            results.require_run(args.run_dir)
            with _damaged(args.run_dir / "run.json"), results.writing(args.run_dir):
                print(_report().rebuild(args.run_dir))
            return _verdict_status(args.run_dir, args.fail_on)
        if args.verb == "compare":
            from harness import compare_runs  # scipy, as for _report()

            with _damaged(f"a cell.json of {args.run_a} or {args.run_b}"):
                outcome = compare_runs.compare(args.run_a, args.run_b)
            print(compare_runs.markdown(outcome))
            return _fail_on(outcome.found, args.fail_on)
        if args.verb == "bisect":
            return bisect.command(args)
        if args.verb == "scenarios":
            print(scenarios.describe(args.name))
            return 0
        if args.verb == "clean":
            found = remove_leftovers(None, CommandLog(images.BUILD_DIR / "clean.log"))
            print({k: v for k, v in found.items() if v} or "nothing left behind")
            return 0
    except HarnessError as exc:
        if args.debug:
            traceback.print_exc()
        # A full disk: the unstarted run's files are what fills it, and name nothing useful.
        named = "" if isinstance(exc, ResultsError) else str(exc)
        print(f"error: {exc}{results.discard_unstarted(named)}", file=sys.stderr)
        return exc.exit_code
    except CellError as exc:  # a step before any cell failed, e.g. a config check timed out
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        if args.debug:
            traceback.print_exc()
        print(
            f"error: the Docker engine stopped answering ({type(exc).__name__}). Start it "
            "('make engine'), then run 'python -m harness clean'. --debug shows the traceback.",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        results.discard_unstarted("")  # a run stopped before its first cell keeps no folder
        print(f"interrupted ({signal.Signals(signum).name}); nothing of it is left in Docker",
              file=sys.stderr)  # fmt: skip
        return 128 + signum
    return 0
