"""``python -m harness <verb>``: the command line.

    images  [--haproxy SPEC ...]            build what is missing (support + HAProxy images)
    run     --haproxy SPEC --scenario NAME [--param KEY=VALUE ...]   one cell, one table row
    matrix  FILE [--scenario NAME ...] [--version SPEC ...]   a matrix (or part), then tables
    reproduce --a SPEC --b SPEC --scenario NAME [--param KEY=VALUE ...]   two versions, one verdict
    rerun   CELL_DIR                        repeat one cell from its folder, old vs new
    calibrate [FILE]                        close delays measured against known delays
    report  RUN_DIR                         rebuild report.md from a run folder (no Docker)
    compare RUN_A RUN_B                     run B's cells against run A's, with verdicts (no Docker)
    publish [RESULTS_DIR] [--out DIR]       one static site over every run (no Docker)
    bisect  --good SPEC --bad SPEC --scenario NAME --signal TEXT   the first bad version or commit
    clean                                   remove what dead runs left in Docker
    scenarios [NAME]                        the scenarios, their parameters and allowed values

run, matrix, reproduce, report and compare take --json: one JSON document on stdout.
run, matrix and reproduce take --dry-run: the cells they would run, and nothing started.
--results-dir DIR (before the verb) chooses the results folder (default: $HARNESS_RESULTS, else
results/).

Errors the user can fix exit with 2 and a message, never a traceback. Failed cells exit
with 1. With --fail-on (matrix, reproduce, report, compare), verdicts that match exit with 3
(EXIT_VERDICT): `--fail-on regression` on any regression, `--fail-on change` on any
regression, improvement or changed outcome; failed cells (1) take precedence.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
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
from pydantic import ValidationError

from harness import ROOT, bisect, results, runner
from harness.analyse import calibration, record
from harness.analyse.record import CellRecord
from harness.errors import CellError, HarnessError, ResultsError
from harness.plan import scenarios, spec, versions
from harness.progress import Progress
from harness.quote import shown
from harness.stack import hosts, images
from harness.stack.compose import CommandLog
from harness.stack.project import (
    Interrupted,
    describe_removed,
    interrupt_on_signals,
    partition,
    remove_stale,
)

DEFAULT_VERSIONS = ["debian:bullseye", "debian:bookworm", "debian:trixie"]
DEFAULT_MATRIX = ROOT / "matrices" / "default.yaml"
# The exit status of --fail-on: distinct from 1 (failed cells) and 2 (bad input).
EXIT_VERDICT = 3
FAIL_ON_HELP = (
    "exit with 3 when a verdict is a regression (regression), or a regression, an "
    "improvement or a changed outcome (change)"
)


def _context(text: str) -> str:
    """A Docker context name as argparse takes it: Docker's own rule, narrowed
    (harness.plan.spec.CONTEXT_NAME); anything else is refused before a command runs."""
    if not re.fullmatch(spec.CONTEXT_NAME, text):
        raise argparse.ArgumentTypeError(f"not a Docker context name: {text!r}")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks with errors")
    parser.add_argument(
        "--results-dir",
        "--results",
        dest="results",
        type=Path,
        metavar="DIR",
        help="where run folders go (default: $HARNESS_RESULTS, else results/)",
    )
    parser.add_argument(
        "--allow-context",
        action="append",
        default=[],
        type=_context,
        metavar="NAME",
        help="let a matrix's (or a rerun folder's) hosts: use this Docker context "
        "(repeatable); without it, hosts: naming a context other than default is refused",
    )
    verbs = parser.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("images", help="build the images a run needs")
    p.add_argument(
        "--haproxy",
        nargs="+",
        action="extend",
        metavar="SPEC",
        help=f"version specs (one or more, repeatable); default: {' '.join(DEFAULT_VERSIONS)}",
    )

    p = verbs.add_parser("run", help="run one cell and print its row")
    p.add_argument("--haproxy", required=True, metavar="SPEC", help="e.g. debian:bookworm")
    p.add_argument("--scenario", default="smoke")
    p.add_argument("--duration", type=float, default=10, help="seconds of load [10]")
    p.add_argument("--users", type=int, default=20, help="Locust users, closed loop [20]")
    p.add_argument("--rate", type=float, help="open loop instead: requests per second")
    p.add_argument(
        "--generator", choices=["locust", "wrk", "h2load", "requests", "node", "go"],
        default="locust",
        help="load generator of load scenarios [locust]; wrk: --users connections, closed "
        "loop; h2load: the same over HTTP/2 (with --param http2=h2c or h2); requests, node, "
        "go: the field notes' own clients with their defaults (their settings: a matrix "
        "entry's load:)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, help="wrk's or h2load's threads [1]")
    p.add_argument("--streams", type=int, help="h2load's concurrent streams per connection [1]")
    p.add_argument(
        "--requests",
        type=int,
        help="requests in all (max_requests: h2load and the native clients), not --duration",
    )
    p.add_argument("--workers", type=int, help="Locust worker processes (distributed mode)")
    _plan_options(p, params=True)
    _json_option(p)

    p = verbs.add_parser("matrix", help="run every cell of a matrix file")
    p.add_argument("file", nargs="?", type=Path, default=DEFAULT_MATRIX)
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="finish an interrupted run: only cells without a complete cell.json run",
    )
    p.add_argument("--fail-on", choices=["regression", "change"], help=FAIL_ON_HELP)
    p.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="only the matrix's entries for this scenario (repeatable)",
    )
    p.add_argument(
        "--version",
        action="append",
        metavar="SPEC",
        help="only this version of the matrix, and its baseline (repeatable)",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="KEY=VALUE",
        help="only the cells whose parameter KEY has this value (repeatable), e.g. tls=1.3",
    )
    _plan_options(p, params=False)
    _json_option(p)

    p = verbs.add_parser("reproduce", help="compare two versions on one scenario, with a verdict")
    p.add_argument("--a", required=True, metavar="SPEC", help="baseline version spec")
    p.add_argument("--b", required=True, metavar="SPEC", help="candidate version spec")
    p.add_argument("--scenario", required=True)
    p.add_argument("--repetitions", type=int, default=3, help="cells per version [3]")
    p.add_argument("--fail-on", choices=["regression", "change"], help=FAIL_ON_HELP)
    _plan_options(p, params=True)
    _json_option(p)

    p = verbs.add_parser("rerun", help="repeat one cell from its folder; old and new side by side")
    p.add_argument("cell_dir", type=Path)

    p = verbs.add_parser(
        "calibrate", help="check the close-delay measurements against known delays"
    )
    p.add_argument("file", nargs="?", type=Path, default=ROOT / "matrices" / "calibration.yaml")

    p = verbs.add_parser("report", help="rebuild a run's report from its folder")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--fail-on", choices=["regression", "change"], help=FAIL_ON_HELP)
    _json_option(p)

    p = verbs.add_parser(
        "compare", help="compare two runs: matching cells of run B against run A, with verdicts"
    )
    p.add_argument("run_a", type=Path, help="the baseline run's folder")
    p.add_argument("run_b", type=Path, help="the run judged against it")
    p.add_argument("--fail-on", choices=["regression", "change"], help=FAIL_ON_HELP)
    _json_option(p)

    p = verbs.add_parser("publish", help="one static HTML site over every run in a folder")
    p.add_argument(
        "results_dir", nargs="?", type=Path, help="the runs' folder (default: the results folder)"
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="where the site goes [RESULTS_DIR/site]")

    p = verbs.add_parser("bisect", help="find the first bad release or commit between two")
    bisect.add_arguments(p)

    clean = verbs.add_parser("clean", help="remove what runs whose process died left in Docker")
    clean.add_argument(
        "--context", action="append", default=[], type=_context, metavar="NAME",
        help="also on the engine of this Docker context (repeatable): where a run's hosts: "
        "placed services",
    )  # fmt: skip

    p = verbs.add_parser("scenarios", help="list the scenarios and their typed parameters")
    p.add_argument("name", nargs="?", help="one scenario, with every parameter")
    return parser


def _plan_options(p: argparse.ArgumentParser, params: bool) -> None:
    if params:
        p.add_argument(
            "--param",
            action="append",
            metavar="KEY=VALUE",
            help="a scenario parameter, e.g. --param timeout_client=5s (repeatable; "
            "'python -m harness scenarios NAME' lists them)",
        )
    p.add_argument(
        "--dry-run", action="store_true", help="list the cells it would run; start nothing"
    )
    p.add_argument(
        "--render",
        type=Path,
        metavar="DIR",
        help="with --dry-run: also write each cell's rendered haproxy.cfg and compose.yaml "
        "to DIR/<cell>/ (image names are stand-ins)",
    )


def _json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout instead of the report (for scripts)",
    )


def _print_json(document: dict[str, Any]) -> None:
    print(json.dumps(document, indent=1, default=str))


def _run_document(run_dir: Path) -> dict[str, Any]:
    """A finished run for scripts: its folder, tally, verdicts and cells (no metrics:
    those are in each cell.json and results.csv)."""
    report = _report()
    found = report.read_verdicts(run_dir)
    cells = [
        {
            "cell": r.cell,
            "status": r.status,
            "version": r.version.spec,
            "label": r.version.label,
            "scenario": r.scenario,
            "params": r.params,
            "repetition": r.repetition,
            **({"error": r.error} if r.error else {}),
        }
        for r in record.cells(run_dir)
    ]
    return {
        "run_dir": str(run_dir),
        "report": str(run_dir / "report.md"),
        "tally": report.tally(found),
        "verdicts": [dataclasses.asdict(c) for c in report.ordered(found)],
        "cells": cells,
    }


def _run_id(args: argparse.Namespace, name: str) -> str:
    """A new run's id; a dry run's is only a name (no folder is made for it)."""
    if args.dry_run:
        return f"{results.stamp()}-{results.safe_name(name)}"
    return results.new_run_id(name)


def _dry_run(plan: spec.Plan, as_json: bool = False, into: Path | None = None) -> int:
    """The plan on the terminal: every cell, what it varies, and the load it would run;
    ``into``: a folder for each cell's rendered files (``--render DIR``)."""
    from tabulate import tabulate

    from harness.stack import render

    # what would stop the run before its first cell
    rendered = render.check_templates(plan.cells)
    if into is not None:
        for cell_id, (cfg, compose) in rendered.items():
            results.write_text(into / cell_id / "haproxy.cfg", cfg)
            results.write_text(into / cell_id / "compose.yaml", compose)
        print(f"rendered files of {len(rendered)} cell(s) in {into}", file=sys.stderr)
    if as_json:
        cells = [
            {
                "index": c.index,
                "cell": c.id,
                "version": c.version.text,
                "label": c.version.label,
                "scenario": c.scenario,
                "params": c.params,
                "repetition": c.repetition,
                "bound_s": runner.cell_bound_s(c),
            }
            for c in plan.cells
        ]
        _print_json({"cells": cells, "bound_s": sum(c["bound_s"] for c in cells)})
        return 0

    if (placed := plan.matrix.hosts) is not None:
        roles = ", ".join(
            f"{role} on {getattr(placed, role).context} ({getattr(placed, role).address})"
            for role in spec.ROLES
        )
        try:
            hosts.require_consent(placed, "hosts:")
            consent = "allowed"
        except HarnessError as exc:
            how = str(exc).split("If you mean it, ")[-1].removesuffix(" Nothing has been started.")
            consent = f"NOT allowed: {how}"
        print(f"hosts: {roles}; {consent}", file=sys.stderr)
    rows = [[c.index, c.version.label, c.scenario, c.changed_params_text, c.repetition, c.id]
            for c in plan.cells]  # fmt: skip
    print(tabulate(rows, ["#", "version", "scenario", "parameters (not default)", "rep", "cell"]))
    bound = sum(runner.cell_bound_s(c) for c in plan.cells)
    print(
        f"\n{len(plan.cells)} cell(s) on {len(plan.versions)} version(s); at most about "
        f"{bound / 60:.0f} min: each cell's load bound and drain plus {runner.CELL_OVERHEAD_S:g} s"
        " around them (probe cells usually end well before their bound), besides image "
        "builds. --dry-run: nothing was started.",
        file=sys.stderr,
    )
    return 0


@contextmanager
def _damaged(path: Path | str) -> Iterator[None]:
    """Files the harness wrote but someone changed: say which, not where Python tripped."""
    try:
        yield
    except ValidationError as exc:  # a number no record holds: its first error, one line
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "(top level)"
        raise HarnessError(
            f"{path} (or a file beside it) is not what the harness wrote: its numbers give "
            f"{exc.title} {shown(where, 200)} = {shown(first.get('input'))}, but "
            f"{first['msg'].lower()}. "
            "Restore it from a copy, or run that cell or matrix again."
        ) from exc
    # ArithmeticError: an edited count beyond int64 overflows numpy (OverflowError)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError, ArithmeticError) as exc:
        said = str(exc) if len(str(exc)) <= 300 and str(exc).isprintable() else shown(str(exc), 300)
        raise HarnessError(
            f"{path} (or a file beside it) is not what the harness wrote: {type(exc).__name__} "
            f"{said}. Restore it from a copy, or run that cell or matrix again."
        ) from exc


def _report() -> ModuleType:
    # Imported when needed: its statistics pull in scipy, a second of start-up that
    # every command would otherwise pay, errors included.
    from harness.report import tables as report

    return report


def _rebuild(run_dir: Path, records: list[CellRecord] | None = None) -> str:
    """Every output of a run rewritten from its folder; returns report.md's text.
    ``records``: the cell records the runner just wrote, used as they are (no cell is
    analysed twice in a run); without them every cell is recomputed from its raw files."""
    from harness.report import rebuild  # plots too: matplotlib, slower still

    return rebuild.rebuild(run_dir, records)


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
    as_json: bool = False,
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
            text = _rebuild(run_dir, records)
    if as_json:
        _print_json(_run_document(run_dir))
    elif show_report:
        print(text)
    print(f"report: {run_dir / 'report.md'} and report.html", file=sys.stderr)
    failed = [r.cell for r in records if not r.ok]
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
        if args.results is not None:
            results.use_results_dir(args.results)
        hosts.allow(args.allow_context)
        if getattr(args, "render", None) is not None and not args.dry_run:
            raise HarnessError("--render DIR goes with --dry-run: a real run renders into "
                               "its own run folder.")  # fmt: skip
        if getattr(args, "dry_run", False):
            pass  # nothing is written: no check of the results folder
        elif args.verb in ("run", "matrix", "reproduce", "calibrate"):
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
            load = spec.load_options(
                args.users,
                args.rate,
                args.duration,
                args.generator,
                args.threads,
                args.workers,
                args.streams,
                args.requests,
            )
            params = spec.param_options(args.param, for_scenarios=(args.scenario,))
            plan = spec.single(args.haproxy, args.scenario, _run_id(args, args.scenario), load,
                               params)  # fmt: skip
            if args.dry_run:
                return _dry_run(plan, args.json, args.render)
            return _run_plan(plan, as_json=args.json)
        if args.verb == "matrix":
            if args.resume:
                if args.scenario or args.version or args.only or args.dry_run:
                    raise HarnessError(
                        "--resume finishes the part of the matrix its run started with; "
                        "--scenario, --version, --only and --dry-run do not go with it."
                    )
                plan = runner.resume_plan(args.resume)
                run_dir = args.resume.absolute()  # it reaches `docker run --mount`
                results.check_mountable(run_dir, str(args.resume))
                return _run_plan(plan, run_dir=run_dir, fail_on=args.fail_on, as_json=args.json)
            only = spec.Only(
                tuple(args.scenario or ()),
                tuple(args.version or ()),
                spec.param_options(args.only, "--only", tuple(scenarios.SCENARIOS)),
            )
            plan = spec.load(args.file, _run_id(args, args.file.stem), only)
            if args.dry_run:
                return _dry_run(plan, args.json, args.render)
            return _run_plan(plan, fail_on=args.fail_on, as_json=args.json)
        if args.verb == "reproduce":
            params = spec.param_options(args.param, for_scenarios=(args.scenario,))
            plan = spec.expand(
                {
                    "name": f"reproduce-{args.scenario}",
                    "description": f"{args.b} against {args.a} on {args.scenario}",
                    "versions": [args.a, args.b],
                    "baseline": args.a,
                    "repetitions": args.repetitions,
                    "scenarios": [{"name": args.scenario, "params": params}],
                },
                _run_id(args, f"reproduce-{args.scenario}"),
                where="the command line (--a, --b, --scenario, --param)",
            )
            if args.dry_run:
                return _dry_run(plan, args.json, args.render)
            run_dir = results.RESULTS_DIR / plan.cells[0].run_id
            with results.locked(run_dir), results.writing(run_dir):
                _rebuild(run_dir, runner.execute(plan, run_dir, Progress()))
            if args.json:
                _print_json(_run_document(run_dir))
            else:
                print(_report().verdict_screen(run_dir))
            return _verdict_status(run_dir, args.fail_on)
        if args.verb == "rerun":
            with _damaged(args.cell_dir / "cell.json"):
                old, new = runner.rerun(args.cell_dir.resolve(), Progress())
            print(_report().side_by_side(old, new))
            return 0 if new.ok else 1
        if args.verb == "calibrate":
            plan = spec.load(args.file, results.new_run_id(args.file.stem))
            _run_plan(plan, show_report=False)
            records = record.cells(results.RESULTS_DIR / plan.cells[0].run_id)
            print(calibration.table(records))
            found = [p for r in records for p in calibration.problems(r)]
            for problem in found:
                print(f"out of tolerance: {problem}", file=sys.stderr)
            return 1 if found else 0
        if args.verb == "report":
            results.require_run(args.run_dir)
            with _damaged(args.run_dir / "run.json"), results.writing(args.run_dir):
                text = _rebuild(args.run_dir)
            if args.json:
                _print_json(_run_document(args.run_dir))
            else:
                print(text)
            return _verdict_status(args.run_dir, args.fail_on)
        if args.verb == "compare":
            from harness.report import compare_runs  # scipy, as for _report()

            with _damaged(f"a cell.json of {args.run_a} or {args.run_b}"):
                outcome = compare_runs.compare(args.run_a, args.run_b)
            if args.json:
                report = _report()
                _print_json(
                    {
                        "run_a": str(outcome.run_a),
                        "run_b": str(outcome.run_b),
                        "tally": report.tally(outcome.found),
                        "verdicts": [dataclasses.asdict(c) for c in report.ordered(outcome.found)],
                        "only_a": outcome.only_a,
                        "only_b": outcome.only_b,
                        "notes": outcome.notes,
                    }
                )
            else:
                print(compare_runs.markdown(outcome))
            return _fail_on(outcome.found, args.fail_on)
        if args.verb == "publish":
            from harness.report import site  # matplotlib and scipy: only when asked

            where = args.results_dir or results.RESULTS_DIR
            if not where.is_dir():
                raise HarnessError(f"{where}: no such folder of runs. Name the folder that "
                                   "holds the run folders (results/ by default).")  # fmt: skip
            index = site.publish(where, args.out)
            print(f"site: {index} ({len(site.runs(where))} run(s))")
            return 0
        if args.verb == "bisect":
            return bisect.command(args)
        if args.verb == "scenarios":
            print(scenarios.describe(args.name))
            return 0
        if args.verb == "clean":
            for context in ["default", *dict.fromkeys(args.context)]:
                on = "" if context == "default" else f" (context {context})"
                removed = remove_stale(CommandLog(images.BUILD_DIR / "clean.log"), context)
                print(
                    (describe_removed(removed) + on) if removed
                    else f"nothing left behind by a run that ended{on}"
                )  # fmt: skip
                _, live = partition(context)
                for run, found in live.items():
                    print(f"left alone: run {run} is still running ({len(found['containers'])} "
                          "container(s)); it tears its own stack down when it ends")  # fmt: skip
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
