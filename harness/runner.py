"""One run, start to end: prepare every cell, then run them one at a time.

prepare  images for every version; render haproxy.cfg + compose.yaml per cell;
         check each config with that version's own binary (haproxy -c).
         Any problem here is the user's to fix: nothing has been started yet.
run      compose up --wait -> Locust load -> collect logs -> compose down -v
analyse  cell.json per cell; a failed cell is recorded and the run goes on.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import images, observe, provenance, render, results, scenarios, versions, workload
from harness.analyse import cell_metrics
from harness.compose import CommandLog, Compose
from harness.compose import client as docker_engine
from harness.errors import CellError, SpecError
from harness.images import HaproxyImage, ImageSet
from harness.progress import Progress
from harness.scenarios import Knobs, Probe
from harness.spec import Cell, Load, Plan
from harness.stack import Stack

# Observers sample this long before the load, so every state has a pre-load baseline.
BASELINE_S = 1.0


@dataclass(frozen=True)
class Prepared:
    cell: Cell
    folder: Path
    project: str
    knobs: Knobs
    load_args: list[str]


def prepare(plan: Plan, run_dir: Path, progress: Progress) -> tuple[ImageSet, list[Prepared]]:
    log = CommandLog(run_dir / "images.log")
    progress.step(f"images for {len(plan.versions)} HAProxy version(s) and the support images")
    image_set = images.ensure_images(plan.versions, log, progress.step)
    render.write_certs(run_dir)
    prepared = []
    for cell in plan.cells:
        folder = run_dir / cell.id
        knobs = scenarios.get(cell.scenario, cell.id).knobs(cell.params)
        project = render.project_name(cell)
        net = render.Network.for_project(project)
        hx = image_set.haproxy[cell.version.text]
        args = workload.locust_args(cell, knobs, net)
        render.write(folder, "haproxy.cfg", render.haproxy_cfg(cell, knobs, net))
        compose = render.compose_yaml(cell, knobs, net, image_set, hx, project, args)
        render.write(folder, "compose.yaml", compose)
        render.write(folder, "haproxy-vv.txt", hx.vv)
        _create_outputs(folder, knobs)
        if knobs.tls:
            shutil.copytree(run_dir / "certs", folder / "certs", dirs_exist_ok=True)
        _check_config(hx.tag, folder, log)
        _check_compose(project, folder, log)
        prepared.append(Prepared(cell, folder, project, knobs, args))
    return image_set, prepared


def _create_outputs(folder: Path, knobs: Knobs) -> None:
    """Files that containers write as their own users (tcpdump, haproxy in official
    images) are created here, writable by anyone, in the cell's folder."""
    outputs = [folder / f"{knobs.target}.pcap"]
    if knobs.target == "haproxy":
        outputs.append(folder / "haproxy.log")
    for path in outputs:
        path.touch()
        path.chmod(0o666)


def _check_config(tag: str, folder: Path, log: CommandLog) -> None:
    proc = log.run(
        [
            "docker", "run", "--rm", "--network", "none", "--label", "harness=1",
            "-v", f"{folder / 'haproxy.cfg'}:/etc/harness/haproxy.cfg:ro",
            "-v", f"{folder / 'certs'}:/etc/harness/certs:ro",
            "--entrypoint", "haproxy", tag, "-c", "-f", "/etc/harness/haproxy.cfg",
        ],
        timeout=60,
        check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).decode(errors="replace").strip()
        raise SpecError(
            f"{folder / 'haproxy.cfg'}: HAProxy ({tag}) rejects the rendered config:\n{out}\n"
            "Check the scenario parameters of this cell; nothing has been started."
        )


def _check_compose(project: str, folder: Path, log: CommandLog) -> None:
    try:
        Compose(project, folder / "compose.yaml", log).run("config", "--quiet", timeout=60)
    except CellError as exc:
        raise SpecError(
            f"{folder / 'compose.yaml'}: Compose rejects the rendered file: {exc}\n"
            "Check the scenario parameters of this cell; nothing has been started."
        ) from exc


def _measure(stack: Stack, item: Prepared) -> int:
    """Baseline, load, drain: the observers run throughout; raw files land in the folder."""
    folder, knobs = item.folder, item.knobs
    time.sleep(BASELINE_S)
    timing: dict[str, float] = {"load_start": time.time()}
    with observe.CpuSampler(item.project) as cpu:
        code, output = workload.drive(stack, item.cell, knobs, item.load_args)
    timing["load_end"] = time.time()
    results.write_json(folder / "cpu-samples.json", cpu.samples)
    (folder / "locust.log").write_text(output)
    (folder / "backend-stats.json").write_text(observe.backend_totals(stack))
    if knobs.target == "haproxy":
        (folder / "haproxy-info.txt").write_text(observe.haproxy_command(stack, "show info"))
        (folder / "haproxy-stat.csv").write_text(observe.haproxy_command(stack, "show stat"))
    time.sleep(knobs.drain_s)
    timing["drain_end"] = time.time()
    stack.stop("capture", *[f"census-{side}" for side in ("client", knobs.target, "backend")])
    results.write_json(folder / "timing.json", timing)
    # haproxy's log lines went to haproxy.log itself; its console has alerts and warnings.
    console = "haproxy-console.log" if knobs.target == "haproxy" else f"{knobs.target}.log"
    (folder / console).write_text(stack.logs(knobs.target))
    (folder / "backend.log").write_text(stack.logs("backend"))
    return code


def run_cell(item: Prepared, image_set: ImageSet) -> dict[str, Any]:
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
        "repetition": cell.repetition,
        "target": item.knobs.target,
        "load": {**cell.load.model_dump(), "mode": load_mode},
        "images": image_set.support,
        "started": datetime.now(UTC).isoformat(),
    }
    try:
        with Stack(item.project, folder / "compose.yaml", log) as stack:
            code = _measure(stack, item)
        if code != 0:
            raise CellError(f"Locust exited with {code}; see {folder / 'locust.log'}")
        record["metrics"] = cell_metrics.compute(folder, item.knobs.target)
        record["status"] = "ok"
    except CellError as exc:
        record["status"] = "failed"
        record["error"] = str(exc)
    record["finished"] = datetime.now(UTC).isoformat()
    results.write_json(folder / "cell.json", record)
    return record


def execute(plan: Plan, run_dir: Path, progress: Progress) -> list[dict[str, Any]]:
    """Prepare everything, then run every cell; returns the cell records."""
    docker_engine()  # no engine: say so before a run folder exists
    run_dir.mkdir(parents=True, exist_ok=True)
    image_set, prepared = prepare(plan, run_dir, progress)
    results.write_json(
        run_dir / "run.json",
        {
            "run": run_dir.name,
            "matrix": plan.matrix.model_dump(),
            "matrix_file": str(plan.source) if plan.source else None,
            "matrix_sha256": provenance.sha256(plan.source) if plan.source else None,
            "baseline": plan.matrix.baseline or plan.matrix.versions[0],
            "cells": len(prepared),
            "images": {
                text: {"tag": hx.tag, "id": hx.image_id, "reported": hx.version}
                for text, hx in image_set.haproxy.items()
            }
            | {name: {"tag": tag} for name, tag in image_set.support.items()},
            "environment": provenance.collect(),
            "started": datetime.now(UTC).isoformat(),
        },
    )
    records = []
    progress.start(len(prepared))
    for item in prepared:
        progress.cell_start(item.cell)
        t0 = time.monotonic()
        record = run_cell(item, image_set)
        progress.cell_end(item.cell, record, time.monotonic() - t0)
        records.append(record)
    run = results.read_json(run_dir / "run.json")
    results.write_json(run_dir / "run.json", {**run, "finished": datetime.now(UTC).isoformat()})
    return records


RERUN_INPUTS = ("haproxy.cfg", "compose.yaml", "haproxy-vv.txt", "certs")


def rerun(cell_dir: Path, progress: Progress) -> tuple[dict[str, Any], dict[str, Any]]:
    """Repeat one cell from its folder: same rendered files, same images, a new folder
    beside it (``<cell>-rerun-<time>``). Returns the old and the new record."""
    try:
        old = results.read_json(cell_dir / "cell.json")
    except OSError as exc:
        raise SpecError(f"{cell_dir}: not a cell folder (no readable cell.json).") from exc
    if "load_args" not in old:
        raise SpecError(
            f"{cell_dir}: recorded by an older harness (no load_args); re-run the matrix."
        )
    stamp = results.new_run_id("rerun").split("-", 1)[0].lower()
    folder = cell_dir.with_name(f"{cell_dir.name}-rerun-{stamp}")
    folder.mkdir()
    for name in RERUN_INPUTS:
        source = cell_dir / name
        if source.is_dir():
            shutil.copytree(source, folder / name)
        elif source.exists():
            shutil.copy2(source, folder / name)
    version = versions.parse(old["version"]["spec"])
    mode = {"open-loop": "open"}.get(old["load"]["mode"], "closed")
    load = Load(**{**{k: v for k, v in old["load"].items() if k != "mode"}, "mode": mode})
    cell = Cell(
        old["run"],
        old["index"],
        1,
        version,
        old["scenario"],
        old["params"],
        old["repetition"],
        load,
    )
    knobs = scenarios.get(cell.scenario, str(cell_dir)).knobs(cell.params)
    _create_outputs(folder, knobs)
    hx = HaproxyImage(
        version, old["version"]["image"], old["version"]["image_id"], old["version"]["reported"],
        (folder / "haproxy-vv.txt").read_text(),
    )  # fmt: skip
    image_set = ImageSet({version.text: hx}, old["images"])
    item = Prepared(cell, folder, f"{old['project']}-rerun-{stamp}", knobs, old["load_args"])
    progress.step(f"re-running {cell_dir.name} in {folder}")
    return old, run_cell(item, image_set)
