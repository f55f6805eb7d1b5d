"""One run, start to end: prepare every cell, then run them one at a time.

prepare  images for every version; render haproxy.cfg + compose.yaml per cell;
         check each config with that version's own binary (haproxy -c).
         Any problem here is the user's to fix: nothing has been started yet.
run      compose up --wait -> Locust load -> collect logs -> compose down -v
analyse  cell.json per cell; a failed cell is recorded and the run goes on.
"""

from __future__ import annotations

import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import docker
import requests
import yaml

from harness import results
from harness.analyse import cell_metrics, census
from harness.analyse import record as records
from harness.analyse.record import CellRecord, RunManifest
from harness.errors import CellError, HarnessError, ResultsError, SpecError
from harness.plan import spec
from harness.plan.scenarios import Fault, Knobs, Probe
from harness.plan.spec import ROLES, Cell, Hosts, Plan
from harness.progress import Progress
from harness.report import cache as analysis_cache
from harness.stack import (
    checks,
    compose,
    hosts,
    images,
    lease,
    observe,
    provenance,
    ready,
    render,
    workload,
)
from harness.stack.compose import CommandLog
from harness.stack.compose import client as docker_engine
from harness.stack.hosts import Placement
from harness.stack.images import ImageSet
from harness.stack.project import (
    Stack,
    describe_removed,
    remove_leftovers,
    remove_leftovers_settled,
    remove_stale,
    signals_held,
)

COMPLETE = ("ok", "failed")  # a resume leaves these cells as they are


@dataclass(frozen=True)
class Prepared:
    cell: Cell
    folder: Path
    project: str
    knobs: Knobs
    load_args: list[str]
    timeout_s: float
    rendered: dict[str, str]  # file name -> sha256 of what was rendered
    placement: Placement  # which engine runs each service (harness.stack.hosts)
    hosts: Hosts | None = None  # the matrix's placement on Docker contexts, if any


def prepare(
    plan: Plan, run_dir: Path, progress: Progress, cells: list[Cell] | None = None
) -> tuple[ImageSet, list[Prepared]]:
    cells = plan.cells if cells is None else cells
    # before anything starts
    render.preflight(cells, plan.matrix.hosts, f"the matrix {plan.matrix.name!r}")
    log = CommandLog(run_dir / "images.log")
    progress.step(f"images for {len(plan.versions)} HAProxy version(s) and the support images")
    with results.writing(run_dir):  # images.log is in the run folder too
        image_set = images.ensure_images(plan.versions, log, progress.step, run=run_dir.name)
        render.write_certs(run_dir)
    prepared = []
    for cell in cells:
        with results.writing(run_dir / cell.id):
            prepared.append(
                _prepare_cell(
                    cell, run_dir / cell.id, render.project_name(cell), image_set,
                    run_dir / "certs", log, plan.matrix.cell_timeout_s, plan.matrix.hosts,
                )
            )  # fmt: skip
    _ship_images(prepared, log, progress)
    return image_set, prepared


def _ship_images(prepared: list[Prepared], log: CommandLog, progress: Progress) -> None:
    """Every image a remote engine runs, copied there from the local engine once (no
    registry: ``docker save | docker load``, skipped where the image id is there)."""
    wanted: dict[str, set[str]] = {}
    for item in prepared:
        if len(item.placement.engines) == 1 and compose.LOCAL in item.placement.engines:
            continue
        for context, services in item.placement.engines.items():
            name = (
                "compose.yaml" if len(item.placement.engines) == 1 else hosts.compose_name(context)
            )
            doc = yaml.safe_load((item.folder / name).read_text())
            wanted.setdefault(context, set()).update(doc["services"][s]["image"] for s in services)
    if not wanted:
        return
    progress.step(f"images for the engines of contexts {', '.join(sorted(wanted))}")
    # One engine at a time took 10-20 s each here, mostly waiting on `docker load`.
    contexts = sorted(wanted)
    copies = _parallel(*[lambda c=c: hosts.ship_images(wanted[c], c, log) for c in contexts])
    for context, copied in zip(contexts, copies, strict=True):
        for tag in copied:
            progress.step(f"copied {tag} to {context}")


# The rendered files a cell's stack runs from: their sha256 goes into cell.json, so a
# rerun can tell a folder whose files were edited since.
RENDERED = ("haproxy.cfg", "compose.yaml")


def _prepare_cell(
    cell: Cell,
    folder: Path,
    project: str,
    image_set: ImageSet,
    certs: Path,
    log: CommandLog,
    cell_timeout_s: float | None,
    placed_on: Hosts | None = None,
) -> Prepared:
    """Render one cell's files into ``folder`` and check them with its own haproxy and
    Compose. Raises SpecError when either rejects them (nothing has been started).
    ``placed_on``: the engines of a stack that spans them; each gets compose.<context>.yaml
    with its services, and the client and the proxy reach their peers across engines at
    their hosts' addresses (harness.stack.hosts)."""
    knobs = cell.knobs
    net = render.Network.for_project(project)
    where = render.placement(cell, knobs, placed_on)
    peers = render.routed(net, where)
    hx = image_set.haproxy[cell.version.text]
    args = workload.load_args(cell, knobs, peers)
    render.write(folder, "haproxy.cfg", render.haproxy_cfg(cell, knobs, peers))
    compose_text = render.compose_yaml(cell, knobs, net, image_set, hx, project, args)
    render.write(folder, "compose.yaml", compose_text)
    parts = render.compose_parts(cell, knobs, net, image_set, hx, project, args, where)
    for context, text in parts.items():
        render.write(folder, hosts.compose_name(context), text)
    render.write(folder, "haproxy-vv.txt", hx.vv)
    _create_outputs(folder, knobs)
    if knobs.tls:
        shutil.copytree(certs, folder / "certs", dirs_exist_ok=True)
    checks.haproxy_config(hx.tag, folder, log)
    checks.compose_file(project, folder, log)
    for context in parts:
        checks.compose_file(project, folder, log, hosts.compose_name(context))
    timeout = timeout_s(cell_timeout_s, cell, knobs)
    names = [*RENDERED, *(hosts.compose_name(c) for c in parts)]
    rendered = {name: provenance.sha256(folder / name) for name in names}
    return Prepared(cell, folder, project, knobs, args, timeout, rendered, where, placed_on)


def _create_outputs(folder: Path, knobs: Knobs) -> None:
    """Files that containers write as their own users (tcpdump, haproxy: see
    harness/stack/security.py) are created here, writable by anyone, in the cell's folder;
    haproxy.cfg is made readable by haproxy's user, whatever the umask."""
    (folder / "haproxy.cfg").chmod(0o644)
    pcap = folder / f"{knobs.target}.pcap"
    pcap.touch()
    pcap.chmod(0o666)
    if knobs.target == "haproxy":
        logs = folder / "haproxy-logs"
        logs.mkdir(exist_ok=True)
        logs.chmod(0o777)


def _join_haproxy_logs(folder: Path) -> None:
    """haproxy.log: the log of each haproxy start (0.log, 1.log, ...), in order."""
    parts_dir = folder / "haproxy-logs"
    if not parts_dir.is_dir():
        return
    parts = sorted(parts_dir.glob("*.log"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
    with (folder / "haproxy.log").open("wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    shutil.rmtree(parts_dir)


def _measure(stack: Stack, item: Prepared, phases: dict[str, float]) -> int:
    """Load, counters, drain, collect: the observers run throughout (their pre-load
    baseline was waited for as the stack started: harness/stack/ready.py); raw files land
    in the folder, timing.json gets the epoch seconds of the load's start and end, of the
    drain's end and whether it drained (:func:`wait_drained`). ``phases`` gets the
    seconds each step took."""
    folder, knobs = item.folder, item.knobs
    timing: dict[str, Any] = {"load_start": time.time()}
    fault = _inject_later(stack, knobs.fault, timing) if knobs.fault else None
    with observe.CpuSampler(item.project, contexts=stack.contexts) as cpu:
        code, output = workload.drive(stack, item.cell, knobs, item.load_args)
    timing["load_end"] = time.time()
    phases["load"] = timing["load_end"] - timing["load_start"]
    if fault is not None:
        fault.cancel()
        fault.join(timeout=90)
    results.write_json(folder / "cpu-samples.json", cpu.samples)
    (folder / f"{workload.generator(item.cell, knobs)}.log").write_text(output)
    # The backend's and haproxy's counters, asked at once: independent execs.
    asks = [lambda: observe.backend_totals(stack)]
    if knobs.target == "haproxy":
        asks.append(lambda: observe.haproxy_commands(stack, "show info", "show stat"))
    totals, *counters = _parallel(*asks)
    if totals is not None:  # none from a killed backend
        (folder / "backend-stats.json").write_text(totals)
    if counters:
        info, stat = counters[0]
        (folder / "haproxy-info.txt").write_text(info)
        (folder / "haproxy-stat.csv").write_text(stat)
    phases["counters"] = time.time() - timing["load_end"]
    # The census watches the load's connections close: until every census shows them
    # closed, at most the scenario's drain_s (a state's drain_s, harness/analyse/census.py).
    drained = wait_drained(
        folder, knobs.target, timing["load_start"], time.time(), knobs.drain_s, knobs.watch_pool
    )
    sides = ("client", knobs.target, "backend")
    timing["drain_end"] = time.time()
    timing["drained"] = drained
    if knobs.watch_pool:  # the analysis then reports the pool's watch (census.pool_watch)
        timing["watch_pool"] = True
    phases["drain"] = timing["drain_end"] - timing["load_end"] - phases["counters"]
    died = _target_died(stack, item, timing["load_start"])
    # Observers stopped and the two logs read, all at once (Docker SDK, no CLI).
    console = "haproxy-console.log" if knobs.target == "haproxy" else f"{knobs.target}.log"
    _, (target_log, backend_log) = _parallel(
        lambda: stack.stop("capture", *[f"census-{side}" for side in sides]),
        lambda: stack.logs(knobs.target, "backend"),
    )
    results.write_json(folder / "timing.json", timing)
    # haproxy's log lines went to haproxy.log itself; its console has alerts and warnings.
    (folder / console).write_text(target_log)
    _join_haproxy_logs(folder)
    (folder / "backend.log").write_text(backend_log)
    phases["collect"] = time.time() - timing["drain_end"]
    if died:
        raise TargetDied(f"{died}; its output is in {folder / console}")
    if knobs.fault:
        if "fault" not in timing:
            raise CellError(
                f"the fault was due {knobs.fault.at_s:g} s into the load, which ended first; "
                "set the load's duration_s above the scenario's at_s"
            )
        if knobs.fault.service == "client":
            return 0  # Locust died with its container, as intended
    return code


# States that leave within a drain window when the load's connections close: all but
# TIME-WAIT, which the kernel holds for a fixed 60 s (TCP_TIMEWAIT_LEN, tcp(7)) whatever
# the cell does, and LISTEN (the servers' sockets, not connections).
NOT_DRAINING = frozenset({"TIME-WAIT", "LISTEN"})
DRAIN_POLL_S = 0.05  # census.sh samples every 0.1 s


def wait_drained(
    folder: Path,
    target: str,
    load_start: float,
    since: float,
    bound_s: float,
    watch_pool: bool = False,
) -> bool:
    """Wait until the load's connections have closed, as the census files in ``folder``
    show them, or ``bound_s`` seconds; True when they closed first.

    Closed: each census (client, ``target``, backend) has a sample taken after ``since``
    (epoch s) in which every state but TIME-WAIT is back at or below its pre-load
    baseline (the most it had before ``load_start``: a state's drain in
    :func:`harness.analyse.census.analyse`), except HAProxy's idle server-side pool:
    ESTAB out of the target's namespace and ESTAB into the backend's, which HAProxy keeps
    open by design after its clients have gone (``http-reuse``; ``pool-purge-delay``, 5 s
    by default). The client's census at baseline means each of its connections is closed
    at both ends, so a cell without a pool (direct to the backend, ``mode tcp``) is
    drained on the server side too once its client side shows it. States that linger
    (connect-timeout's CLOSE-WAIT against a black hole, a FIN-WAIT-2 nobody ends) are
    watched for the whole bound, as the fixed drain did. With ``watch_pool`` the idle pool
    counts too (``Knobs.watch_pool``: a watch of it being closed after the load). Reads
    files only; a census file not written yet, or not written since ``since`` (its
    container gone), is not drained.
    """
    pool = {} if watch_pool else {target: ("ESTAB", "out"), "backend": ("ESTAB", "in")}
    sides = ("client", target, "backend")
    deadline = time.monotonic() + bound_s
    while True:
        if all(
            _drained(folder / f"census-{side}.txt", load_start, since, pool.get(side))
            for side in sides
        ):
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(DRAIN_POLL_S, left))


def _drained(path: Path, load_start: float, since: float, pool: tuple[str, str] | None) -> bool:
    try:
        found = census.parse(path)
    except (OSError, ValueError):
        return False
    ts = found.timestamps
    if not ts or ts[-1] <= since:
        return False
    for key, counts in found.counts.items():
        if key[0] in NOT_DRAINING or key == pool:
            continue
        baseline = max((c for t, c in zip(ts, counts, strict=True) if t < load_start), default=0)
        if counts[-1] > baseline:
            return False
    return True


def _parallel(*calls: Callable[[], Any]) -> list[Any]:
    """Each call's result, in order; the calls run at once (independent Docker commands,
    each mostly waiting on the engine). The first exception raised is re-raised."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [f.result() for f in futures]


class TargetDied(CellError):
    """The proxy under test (or the calibration target) died or restarted unasked."""


def _target_died(stack: Stack, item: Prepared, load_start: float) -> str | None:
    """Whether the target's container outlived the load untouched: None if so, else what
    happened to it (when, in seconds into the load, and its exit code). A fault scenario
    that kills or restarts the target itself is expected, and not judged here."""
    knobs = item.knobs
    if knobs.fault and knobs.fault.service == knobs.target:
        return None
    name = "HAProxy" if knobs.target == "haproxy" else f"the {knobs.target} target"
    try:
        state = observe.container_state(
            item.project, knobs.target, item.placement.context_of(knobs.target)
        )
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        # The engine itself stopped answering: the teardown waits for it and the cell is
        # recorded as failed for that reason (Stack.engine_lost_s), not for a dead target.
        return None
    if state is None:
        return f"{name} died during the load: its container is gone"
    started = _docker_time(state.get("StartedAt"))
    restarted = state.get("RestartCount", 0) > 0 or (
        stack.up_at is not None and started is not None and started > stack.up_at
    )
    if state.get("Status") == "running" and not restarted:
        return None
    finished = _docker_time(state.get("FinishedAt"))
    when = f"{finished - load_start:.1f} s into the load" if finished else "during the load"
    how = f"exit code {state.get('ExitCode')}"
    if state.get("OOMKilled"):
        how += ", killed by the kernel's OOM killer"
    if state.get("Status") == "running":  # a restart policy brought it back
        return f"{name} died {when} ({how}) and was restarted, which no fault asked for"
    return f"{name} died {when} ({how}); its container is {state.get('Status')}"


def _docker_time(text: str | None) -> float | None:
    """Epoch seconds of Docker's RFC 3339 time; None for its zero time (never happened)."""
    if not text or text.startswith("0001-"):
        return None
    return datetime.fromisoformat(text).timestamp()


def _inject_later(stack: Stack, fault: Fault, timing: dict[str, Any]) -> threading.Timer:
    def inject() -> None:
        timing["fault"] = time.time()
        stack.inject(fault.action, fault.service)
        timing["fault_done"] = time.time()

    timer = threading.Timer(fault.at_s, inject)
    timer.daemon = True
    timer.start()
    return timer


def run_cell(item: Prepared, image_set: ImageSet) -> CellRecord:
    """Run one prepared cell and write its cell.json; returns the record written.

    A cell that fails is recorded (status "failed") and returned; an interrupt, a
    results file that cannot be written or a lost engine are recorded as far as they
    can be, then raised.
    """
    cell, folder = item.cell, item.folder
    log = CommandLog(folder / "commands.log")
    hx = image_set.haproxy[cell.version.text]
    load_mode = "probe" if isinstance(item.knobs.load, Probe) else f"{cell.load.mode}-loop"
    record: dict[str, Any] = {
        "cell": cell.id,
        "index": cell.index,
        "run": cell.run_id,
        "version": {
            "spec": cell.version.text,
            "label": cell.version.label,
            "origin": cell.version.origin,
            "custom": cell.version.custom,
            "reported": hx.version,
            "image": hx.tag,
            "image_id": hx.image_id,
        },
        "scenario": cell.scenario,
        "params": cell.params,
        "project": item.project,
        "load_args": item.load_args,
        "rendered": item.rendered,
        "repetition": cell.repetition,
        "target": item.knobs.target,
        "load": {**cell.load.model_dump(), "mode": load_mode},
        "images": image_set.support,
        "started": datetime.now(UTC).isoformat(),
    }
    # Seconds per step of the cell (up, listen, baseline, load, counters, drain, collect,
    # down, analyse): what a cell spends around its load (`make bench`).
    phases: dict[str, float] = {}
    record["phases"] = phases
    t0 = time.time()

    if item.hosts is not None:
        record["hosts"] = {
            role: {"context": host.context, "address": str(host.address)}
            for role in ROLES
            for host in [getattr(item.hosts, role)]
        }

    def wait_ready() -> None:
        phases["up"] = time.time() - t0
        phases.update(ready.wait(item.project, folder, item.knobs.target, contexts=contexts))
        if item.hosts is not None:  # the observers' clocks, as the load starts
            t_clocks = time.time()
            record["clocks"] = {ctx: hosts.clock_offset(ctx) for ctx in contexts}
            phases["clocks"] = time.time() - t_clocks

    files = hosts.files(folder, item.placement)
    contexts = tuple(files)
    stack = Stack(
        item.project, folder / "compose.yaml", log, ready=wait_ready,
        placement=item.placement, files=files,
    )  # fmt: skip
    try:
        # A file that cannot be written (a full disk) ends the run, once the stack is
        # down: the `with` has left by the time it is translated.
        with results.writing(folder):
            with cell_deadline(item.timeout_s), stack:
                code = _measure(stack, item, phases)
                t_down = time.time()
            phases["down"] = time.time() - t_down
            if code != 0:
                name = workload.generator(item.cell, item.knobs)
                raise CellError(f"{name} exited with {code}; see {folder / f'{name}.log'}")
            t_analyse = time.time()
            in_flight = _in_flight(record)
            record["metrics"] = cell_metrics.compute(folder, item.knobs.target, in_flight)
            # kept for `harness report`, which then reuses it while the raw files are these
            analysis_cache.remember(folder, item.knobs.target, record["metrics"], in_flight)
            phases["analyse"] = time.time() - t_analyse
            record["status"] = "ok"
    except (CellError, docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        # An SDK call during the cell (stop, logs, exec) fails when the engine goes away;
        # the teardown then waited for it. Without that wait it is no cell's failure.
        if not isinstance(exc, CellError) and stack.engine_lost_s is None:
            raise
        record["status"] = "failed"
        record["error"] = str(exc)
        if stack.engine_lost_s is not None:
            record["error"] = (
                f"the Docker engine stopped answering during this cell; it was back "
                f"{stack.engine_lost_s:.0f} s later and the stack was torn down. ({exc})"
            )
    except KeyboardInterrupt as exc:
        _record_partial(record, item, "interrupted", f"interrupted by {exc}")
        raise
    except ResultsError as exc:  # cell.json too may not fit: recorded if it can be
        with suppress(OSError, HarnessError):
            _record_partial(record, item, "failed", str(exc))
        raise
    except HarnessError as exc:  # the engine went away and did not come back
        _record_partial(record, item, "failed", str(exc))
        raise
    record["finished"] = datetime.now(UTC).isoformat()
    return _write_record(folder, record)


def _in_flight(record: dict[str, Any]) -> int | None:
    """cell_metrics.in_flight_bound of the record being built (its load and parameters)."""
    load = records.LoadRecord.model_validate(record["load"], strict=False)
    return cell_metrics.in_flight_bound(load, record["params"])


def _write_record(folder: Path, data: dict[str, Any]) -> CellRecord:
    """The record built during the cell, validated as a CellRecord, written as cell.json.
    Lax, unlike reading: the values are the harness's own (tuples, numpy floats). An
    error longer than a record holds keeps its start (the whole output is in the logs)."""
    error = data.get("error")
    if isinstance(error, str) and len(error) > records.TEXT_MAX:
        data = {**data, "error": error[: records.TEXT_MAX - 40] + " ... (cut; see commands.log)"}
    cell = CellRecord.model_validate(data, strict=False)
    records.write_cell(folder / "cell.json", cell)
    return cell


def _record_partial(record: dict[str, Any], item: Prepared, status: str, why: str) -> None:
    """The cell ends early: keep what was collected, and say why it ended."""
    record.update(status=status, error=why, finished=datetime.now(UTC).isoformat())
    with results.writing(item.folder):
        _join_haproxy_logs(item.folder)
    with suppress(Exception):  # raw files cut short stay in the folder, uncomputed
        record["metrics"] = cell_metrics.compute(item.folder, item.knobs.target, _in_flight(record))
    _write_record(item.folder, record)


class CellTimeout(CellError):
    pass


@contextmanager
def cell_deadline(seconds: float) -> Iterator[None]:
    """Raise CellTimeout in whatever step the cell is in once ``seconds`` have passed
    (Stack.down disarms it: a teardown is never cut short)."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise CellTimeout(
            f"timed out: the cell was still running after {seconds:.0f} s (the matrix's "
            "cell_timeout_s); the containers' output is in containers.log"
        )

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# Set-up and tear-down of a cell around its load besides its drain (compose up, the
# census's readiness and baseline, counters, collection, teardown, analysis): a median
# of 2.7 s on the 2-core lab machine (cell.json's phases; make bench), 1.3 s of it
# `docker compose up -d`.
CELL_OVERHEAD_S = 3.0


def cell_bound_s(cell: Cell) -> float:
    """What a cell is expected to take at most, in seconds: its load's bound and drain
    plus the set-up and tear-down around it (the ETA's weight of the cell)."""
    return workload.run_time_s(cell, cell.knobs) + cell.knobs.drain_s + CELL_OVERHEAD_S


def timeout_s(plan_timeout: float | None, cell: Cell, knobs: Knobs) -> float:
    """The matrix's cell_timeout_s, else generous: twice the load's own bound, plus
    time to start, drain and collect."""
    if plan_timeout:
        return plan_timeout
    return 2 * workload.run_time_s(cell, knobs) + knobs.drain_s + 300


def execute(
    plan: Plan, run_dir: Path, progress: Progress, resume: bool = False
) -> list[CellRecord]:
    """Prepare everything, then run every cell; returns every cell record of the run.

    ``resume``: the run folder exists; cells with a complete cell.json (ok or failed)
    stand, and only the others (interrupted, or never reached) are prepared and run.
    """
    # before any engine is asked anything: the sweep below already acts on each context
    hosts.require_consent(plan.matrix.hosts, f"the matrix {plan.matrix.name!r}")
    docker_engine()  # no engine: say so before a run folder exists
    with ExitStack() as leases:
        # Held before anything of the run exists in Docker: another run's sweep of what
        # dead runs left (below, and `harness clean`) must see this one alive.
        for run in sorted({run_dir.name} | {c.run_id for c in plan.cells}):
            leases.enter_context(lease.held(run))
        for context in _contexts(plan):
            if removed := remove_stale(CommandLog(images.BUILD_DIR / "clean.log"), context):
                progress.step(describe_removed(removed))
        return _execute_leased(plan, run_dir, progress, resume)


def _contexts(plan: Plan) -> list[str]:
    """The engines a run uses: the local one, and those its ``hosts:`` name."""
    placed = plan.matrix.hosts
    named = {getattr(placed, role).context for role in ROLES} if placed else set()
    return sorted({compose.LOCAL} | named)


def _execute_leased(
    plan: Plan, run_dir: Path, progress: Progress, resume: bool
) -> list[dict[str, Any]]:
    try:
        return _execute(plan, run_dir, progress, resume)
    except KeyboardInterrupt:
        # Cells tear their own stacks down; this catches what a signal can cut short
        # elsewhere, e.g. a `docker run --rm` config check during prepare.
        with signals_held(f"cleaning up {run_dir.name}"):
            remove_leftovers_settled(CommandLog(run_dir / "images.log"), run_dir.name)
        raise
    except ResultsError:  # a config check's `docker run --rm` may still be going away
        with suppress(OSError):  # its log line may not fit either
            remove_leftovers(None, CommandLog(run_dir / "images.log"), run=run_dir.name)
        raise


def _execute(plan: Plan, run_dir: Path, progress: Progress, resume: bool) -> list[CellRecord]:
    cells = plan.cells
    if resume:
        done = {r.cell for r in records.cells(run_dir) if r.status in COMPLETE}
        cells = [c for c in plan.cells if c.id not in done]
        progress.step(
            f"resuming {run_dir.name}: {len(done)} of {len(plan.cells)} cell(s) complete, "
            f"{len(cells)} to run"
        )
        for cell in cells:  # an interrupted cell starts over in a clean folder
            shutil.rmtree(run_dir / cell.id, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    image_set, prepared = prepare(plan, run_dir, progress, cells)
    if resume:  # the run's own manifest stands; it says when it was resumed
        earlier = records.load_run(run_dir / "run.json")
        manifest = RunManifest.model_validate(
            {
                **earlier.model_dump(exclude_unset=True, exclude={"finished", "interrupted"}),
                "resumed": [*earlier.resumed, datetime.now(UTC).isoformat()],
            }
        )
    else:
        manifest = _manifest(plan, run_dir, image_set)
    records.write_run(run_dir / "run.json", manifest)
    progress.start(
        len(prepared),
        {
            item.cell.id: (type(item.knobs.load).__name__, cell_bound_s(item.cell))
            for item in prepared
        },
    )
    for item in prepared:
        progress.cell_start(item.cell)
        t0 = time.monotonic()
        try:
            record = run_cell(item, image_set)
        except KeyboardInterrupt as exc:
            with suppress(OSError, HarnessError):  # the interrupt is what matters here
                _close_manifest(run_dir, interrupted={"cell": item.cell.id, "by": str(exc)})
            raise
        except HarnessError as exc:
            with suppress(OSError, HarnessError):  # best effort: the disk may be full
                _close_manifest(run_dir, failed={"cell": item.cell.id, "error": str(exc)})
            raise
        progress.cell_end(item.cell, record, time.monotonic() - t0)
    _close_manifest(run_dir)
    return records.cells(run_dir)


def _manifest(plan: Plan, run_dir: Path, image_set: ImageSet) -> RunManifest:
    """run.json as a run starts: the matrix, its file, images and environment."""
    return RunManifest.model_validate({
        "run": run_dir.name,
        "matrix": plan.matrix.model_dump(),
        "matrix_file": str(plan.source) if plan.source else None,
        "matrix_sha256": provenance.sha256(plan.source) if plan.source else None,
        "baseline": plan.matrix.baseline or plan.matrix.versions[0],
        "cells": len(plan.cells),
        "images": {
            text: {"tag": hx.tag, "id": hx.image_id, "reported": hx.version}
            for text, hx in image_set.haproxy.items()
        }
        | {name: {"tag": tag} for name, tag in image_set.support.items()},
        "environment": provenance.collect(),
        "started": datetime.now(UTC).isoformat(),
    }, strict=False)  # fmt: skip


def _close_manifest(run_dir: Path, **how: Any) -> None:
    """run.json says how the run ended: finished, or interrupted / failed at which cell."""
    run = records.load_run(run_dir / "run.json")
    ended = how or {"finished": datetime.now(UTC).isoformat()}
    closed = RunManifest.model_validate({**run.model_dump(exclude_unset=True), **ended})
    records.write_run(run_dir / "run.json", closed)


def resume_plan(run_dir: Path) -> Plan:
    """The plan of an earlier run, from its run.json, with the same run id and cell ids."""
    results.require_run(run_dir)
    path = run_dir / "run.json"
    manifest = records.load_run(path)
    matrix, source = spec.recorded(manifest.model_dump(mode="json", exclude_unset=True), path)
    return spec.expand(matrix, run_dir.name, source, where=f"{path} (its matrix:)")


def rerun(cell_dir: Path, progress: Progress) -> tuple[CellRecord, CellRecord]:
    """Repeat one cell from its folder, in a new folder beside it
    (``<cell>-rerun-<time>``). Returns the old and the new record.

    A cell folder may come from someone else, so nothing in it is run as it is: the
    cell is planned again from cell.json's version, scenario, parameters and load,
    each validated as a matrix file's would be, and rendered anew with the current
    templates, images, certificates and load command. A folder whose haproxy.cfg or
    compose.yaml differs from what its run rendered (sha256 in cell.json) is refused:
    someone edited it, and a rerun would not repeat what it claims to.

    Raises HarnessError (SpecError) for a folder that is not a cell, a record that does
    not validate, or edited files.
    """
    results.require_cell(cell_dir)
    old = records.load_cell(cell_dir / "cell.json")
    recorded = _recorded_plan(old, cell_dir)
    _check_rendered(old, cell_dir)
    stamp = results.stamp().lower()
    folder = cell_dir.with_name(f"{cell_dir.name}-rerun-{stamp}")
    cell = recorded.cells[0]
    render.preflight([cell], recorded.matrix.hosts, str(cell_dir / "cell.json"))
    with results.writing(folder):
        folder.mkdir()
        log = CommandLog(folder / "commands.log")
        image_set = images.ensure_images(recorded.versions, log, progress.step)
        render.write_certs(folder)
        project = f"{render.project_name(cell)}-rerun-{stamp}"
        item = _prepare_cell(
            cell, folder, project, image_set, folder / "certs", log, None, recorded.matrix.hosts
        )
        _ship_images([item], log, progress)
    progress.step(f"re-running {cell_dir.name} in {folder}")
    with lease.held(cell.run_id):  # its stack carries the old run's label
        return old, run_cell(item, image_set)


def _recorded_plan(old: CellRecord, cell_dir: Path) -> Plan:
    """The one-cell plan a cell.json records, validated like a matrix file."""
    where = cell_dir / "cell.json"
    if old.rendered is None:
        raise SpecError(
            f"{where}: recorded by an older harness, or not by the harness (no sha256 of "
            "its rendered files); run its matrix again instead."
        )
    load = old.load.model_dump(exclude_unset=True, exclude={"mode"})
    load["mode"] = "open" if old.load.mode == "open-loop" else "closed"
    raw = {
        "name": "rerun",
        "versions": [old.version.spec],
        "load": load,
        "scenarios": [{"name": old.scenario, "params": old.params}],
    }
    if old.hosts:  # the same engines (a placement the matrix validates again)
        raw["hosts"] = old.hosts
    if not results.RUN_ID.fullmatch(old.run):
        raise SpecError(f"{where}: 'run' is not a run id the harness makes: {old.run!r}.")
    return spec.expand(raw, old.run, source=where)


def _check_rendered(old: CellRecord, cell_dir: Path) -> None:
    """Refuse a cell folder whose rendered files are not what its run rendered."""
    rendered = old.rendered
    parts = {
        name for name in rendered or {} if re.fullmatch(r"compose\.[A-Za-z0-9_.-]+\.yaml", name)
    }
    if rendered is None or set(rendered) != set(RENDERED) | parts:
        raise SpecError(f"{cell_dir / 'cell.json'}: 'rendered' is damaged; run its matrix again.")
    for name in [*RENDERED, *sorted(parts)]:
        path = cell_dir / name
        actual = provenance.sha256(path) if path.is_file() else "(missing)"
        if actual != rendered[name]:
            raise SpecError(
                f"{path}: edited since its run rendered it (sha256 {actual[:12]}, recorded "
                f"{str(rendered[name])[:12]}). A rerun repeats the recorded cell, and this "
                "folder no longer shows it: restore the file, or run the matrix again. "
                "Nothing has been started."
            )
