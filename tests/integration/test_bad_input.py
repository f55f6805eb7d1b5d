"""Malformed input, one test per input, through the real CLI on a real engine.

Each refusal must: exit with 2; say on stderr what is wrong, where (file and line, key,
option or Docker object) and how to fix it; show no traceback; start no compose stack;
and leave earlier results byte for byte as they were, with no run folder of its own
left behind (unless the message says why it kept one).

No test here starts a stack: every input is refused before the first cell.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import docker.errors
import pytest

from harness import ROOT
from harness.plan import versions
from harness.stack import images
from harness.stack.compose import client
from harness.stack.project import leftovers

EARLIER = "20250101T000000Z-earlier"
# Cells of these runs take their addresses here, away from any concurrent harness run
# (172.30.0.0/16), so a preflight check never trips over someone else's live stack.
POOL = "10.232.0.0/16"


class Cli:
    """``python -m harness`` with results in a temporary folder that already holds an
    earlier run, and the checks every refusal must pass."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.results = tmp / "results"
        cell = self.results / EARLIER / "001-smoke-2.6.12-debian-bookworm-abcdef-r1"
        cell.mkdir(parents=True)
        (self.results / EARLIER / "run.json").write_text(json.dumps({"run": EARLIER}) + "\n")
        (cell / "cell.json").write_text('{"cell": "001", "status": "ok"}\n')
        (self.results / EARLIER / "report.md").write_text("# earlier\n")
        self.before = self._snapshot()
        self.started = 0.0

    def _snapshot(self) -> dict[str, bytes]:
        return {
            str(p.relative_to(self.results)): p.read_bytes()
            for p in sorted(self.results.rglob("*"))
            if p.is_file()
        }

    def __call__(
        self, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        self.started = time.time()
        return subprocess.run(
            [sys.executable, "-m", "harness", *args],
            cwd=cwd,
            env={
                **os.environ,
                "HARNESS_RESULTS": str(self.results),
                "HARNESS_SUBNET_POOL": POOL,
                **(env or {}),
            },
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def refused(
        self, proc: subprocess.CompletedProcess[str], *parts: str, kept: bool = False
    ) -> str:
        """Assert everything a refusal promises; return stderr for further checks."""
        err = proc.stderr
        assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{err}"
        assert "Traceback" not in err, err
        assert "error: " in err, err
        for part in parts:
            assert part in err, f"{part!r} not in:\n{err}"
        assert self._stacks_started(err) == [], err
        # Earlier results are untouched, file for file and byte for byte.
        after = self._snapshot()
        assert {k: v for k, v in after.items() if k in self.before} == self.before
        new = sorted(p.name for p in self.results.iterdir() if p.name != EARLIER)
        if kept:  # allowed only when the message names the folder and says why
            assert len(new) == 1, new
            assert f"The run folder {self.results / new[0]} is kept" in err, err
            assert "Delete it when done" in err
        else:
            assert new == [], f"left behind: {new}\n{err}"
        return err

    def _stacks_started(self, err: str) -> list[str]:
        """Compose containers or networks created for this run, and what is left of them.

        Other harness runs (the lead's concurrent integration tests) are told apart by
        project name (from the run id this run printed) and by compose's project folder,
        which for our cells lies in our results folder.
        """
        prefixes = tuple(
            re.sub(r"[^a-z0-9_-]", "-", f"harness-{run_id}".lower())
            for run_id in re.findall(r"run (\S+): \d+ cell", err)
        )
        events = subprocess.run(
            ["docker", "events", "--since", f"{self.started - 1:.3f}",
             "--until", f"{time.time():.3f}", "--filter", "type=container",
             "--filter", "type=network", "--filter", "event=create", "--format", "{{json .}}"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        started = []
        for line in events.splitlines():
            event = json.loads(line)
            attrs = event["Actor"]["Attributes"]
            name = attrs.get("name", "")
            folder = attrs.get("com.docker.compose.project.config_files", "")
            if (prefixes and name.startswith(prefixes)) or folder.startswith(str(self.tmp)):
                started.append(f"{event['Type']} {name} created")
        left = _leftovers()  # every harness object: ours are those of our projects
        started += [
            n for names in left.values() for n in names if prefixes and n.startswith(prefixes)
        ]
        return started


def _leftovers() -> dict[str, list[str]]:
    # A concurrent run may remove a container between Docker's list and its inspect.
    for _ in range(4):
        try:
            return leftovers(None)
        except docker.errors.NotFound:
            time.sleep(0.5)
    return leftovers(None)


@pytest.fixture(scope="module", autouse=True)
def engine() -> None:
    client()  # a missing engine is an error here, never a skip


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The repository's code and templates, copied: tests break a template or drop a
    tarball into the copy and run the copy's own CLI, never touching the real tree."""
    top = {".venv", ".git", "results", "build", ".pytest_cache", ".ruff_cache"}

    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = {"__pycache__"} | (top if Path(folder) == ROOT else set())
        if Path(folder) == ROOT / "haproxy":
            skip.add("tarballs")
        return skip & set(names)

    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, ignore=ignore)
    (copy / "haproxy" / "tarballs").mkdir()
    return copy


# --- matrix files ----------------------------------------------------------------------

OK_HEAD = "name: t\nversions: [debian:bookworm]\n"

MATRICES = [
    pytest.param(
        "name: t\nversions: [debian:bookworm\nscenarios: [{name: smoke}]\n",
        ["(line 3, column 10): not valid YAML", "expected ',' or ']'", "Fix the syntax there"],
        id="yaml-syntax",
    ),
    pytest.param(
        "name: t\nversions:\n\t- debian:bookworm\n",
        ["(line 3, column 1): not valid YAML", "'\\t'", "not tabs"],
        id="yaml-tab-indent",
    ),
    pytest.param(
        "- debian:bookworm\n- smoke\n",
        ["a matrix file is a mapping", "but this is a list", "versions: [debian:bookworm]"],
        id="not-a-mapping",
    ),
    pytest.param(
        "# nothing yet\n",
        ["a matrix file is a mapping", "an empty file", "scenarios: [{name: smoke}]"],
        id="empty-file",
    ),
    pytest.param(
        OK_HEAD + "scenarios: [{name: smoke}]\nrepetitons: 2\n",
        ["repetitons (line 4): Extra inputs are not permitted", "did you mean 'repetitions'"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        OK_HEAD + "load: {users: 5}\nscenarios: [{name: smoke}]\nload: {users: 6}\n",
        ["(line 5, column 1)", "'load' is given twice", "first on line 3", "Keep one"],
        id="duplicate-key",
    ),
    pytest.param(
        "name: t\nscenarios: [{name: smoke}]\n",
        ["versions (line 1): required but missing", "add it, e.g. versions: [debian:bookworm]"],
        id="missing-versions",
    ),
    pytest.param(
        OK_HEAD,
        ["scenarios (line 1): required but missing", "add it, e.g. scenarios: [{name: smoke}]"],
        id="missing-scenarios",
    ),
    pytest.param(
        OK_HEAD + "load: {duration_s: -1}\nscenarios: [{name: smoke}]\n",
        ["load.duration_s (line 3): Input should be greater than 0", "must be > 0 and <= 600"],
        id="negative-duration",
    ),
    pytest.param(
        OK_HEAD + "load:\n  duration_s: 1.0e9\nscenarios: [{name: smoke}]\n",
        ["load.duration_s (line 4): Input should be less than or equal to 600", "<= 600"],
        id="absurd-duration",
    ),
    pytest.param(
        OK_HEAD + "load: {users: 0}\nscenarios: [{name: smoke}]\n",
        ["load.users (line 3): Input should be greater than or equal to 1", ">= 1 and <= 20000"],
        id="zero-users",
    ),
    pytest.param(
        OK_HEAD + "load:\n  users: -3\nscenarios: [{name: smoke}]\n",
        ["load.users (line 4)", "(got -3)", "must be >= 1 and <= 20000"],
        id="negative-users",
    ),
    pytest.param(
        OK_HEAD + "repetitions: 0\nscenarios: [{name: smoke}]\n",
        ["repetitions (line 3): Input should be greater than or equal to 1", ">= 1 and <= 100"],
        id="zero-repetitions",
    ),
    pytest.param(
        OK_HEAD + "baseline: debian:bullseye\nscenarios: [{name: smoke}]\n",
        ["(line 3): baseline 'debian:bullseye' is not one of versions", "or drop baseline:"],
        id="baseline-not-a-version",
    ),
    pytest.param(
        "name: t\nversions: [debian:bookworm, debian:bookworm]\nscenarios: [{name: smoke}]\n",
        ["(line 2): versions lists 'debian:bookworm' more than once", "raise repetitions:"],
        id="version-twice",
    ),
    pytest.param(
        "name: t\nversions:\n  - debian:bookworm\n  - debian:buster\nscenarios: [{name: smoke}]\n",
        ["(line 4): versions[1]: unknown Debian release 'buster'", "Known: debian:bullseye"],
        id="bad-version-spec",
    ),
    pytest.param(
        "name: t\nversions: [2.6]\nscenarios: [{name: smoke}]\n",
        ["versions.0 (line 2): Input should be a valid string", "in quotes"],
        id="version-not-text",
    ),
    pytest.param(
        OK_HEAD + "scenarios:\n  - name: smoke\n    grid: {size: 128}\n",
        ["scenarios.0.grid.size (line 5): Input should be a valid list", "write a list"],
        id="grid-not-a-list",
    ),
    pytest.param(
        OK_HEAD + "scenarios:\n  - name: smoke\n    grid: {size: []}\n",
        ["(line 4): scenarios[0]: grid 'size' is empty", "list at least one value"],
        id="grid-empty",
    ),
    pytest.param(
        OK_HEAD + "scenarios:\n  - name: smoke\n    versions: [debian:trixie]\n",
        ["(line 4): scenarios[0]: versions lists 'debian:trixie'", "Add it to the matrix's"],
        id="entry-version-not-in-matrix",
    ),
    pytest.param(
        OK_HEAD + "scenarios:\n  - name: smoke\n  - name: smokey\n",
        ["(line 5): scenarios[1]: unknown scenario 'smokey'", "Known: smoke, calibration"],
        id="unknown-scenario",
    ),
    pytest.param(
        OK_HEAD + "scenarios:\n  - name: smoke\n    params: {sizee: 1}\n",
        [
            "(line 5): scenarios[0].params.sizee: scenario 'smoke' has no parameter 'sizee'",
            "It takes:",
        ],
        id="unknown-parameter",
    ),
    pytest.param(
        OK_HEAD + "scenarios:\n  - name: smoke\n    params: {size: big}\n",
        [
            "(line 5): scenarios[0].params.size (scenario 'smoke'): Input should be a valid "
            "integer, got 'big'",
            "Allowed: a size in bytes, 0 to 100000000, e.g. 128.",
        ],
        id="parameter-wrong-type",
    ),
    pytest.param(
        OK_HEAD + "scenarios:\n  - name: kernel-knobs\n    params: {tw_reuse: 5}\n",
        [
            "(line 5): scenarios[0].params.tw_reuse (scenario 'kernel-knobs'): Input should be "
            "0, 1 or 2, got 5"
        ],
        id="parameter-out-of-range",
    ),
]


# Values that once reached a rendered file as free text (issue 10): each is now refused
# by its parameter's type, with the key, its line, the allowed form and an example.
MATRICES += [
    pytest.param(
        OK_HEAD + "scenarios:\n  - name: kernel-knobs\n    params:\n      port_range: |-\n"
        "        1024 65000\n            privileged: true\n            pid: host\n",
        [
            "(line 6): scenarios[0].params.port_range (scenario 'kernel-knobs'): not two port "
            "numbers",
            "e.g. '1024 65000'",
        ],
        id="compose-breakout-port-range",
    ),
    pytest.param(
        OK_HEAD + "scenarios:\n  - name: kernel-knobs\n    params: {port_range: '60000 1024'}\n",
        ["(line 5): scenarios[0].params.port_range", "1024 <= low < high <= 65535"],
        id="port-range-reversed",
    ),
    pytest.param(
        OK_HEAD + "scenarios:\n  - name: half-close\n    params:\n      timeout_client: "
        '"30s\\nglobal\\n    stats socket ipv4@0.0.0.0:9998 level admin"\n',
        [
            "(line 6): scenarios[0].params.timeout_client (scenario 'half-close'): not an "
            "HAProxy time value",
            "e.g. '500ms'",
        ],
        id="haproxy-cfg-breakout-timeout",
    ),
    pytest.param(
        OK_HEAD + "scenarios:\n  - name: chunked-stall\n    params: {chunk_max: 1000000}\n",
        ["scenarios[0].params.chunk_max (scenario 'chunked-stall')", "65536"],
        id="two-million-probe-connections",
    ),
    pytest.param(
        OK_HEAD + "scenarios:\n  - name: fault\n    params: {at_s: .inf}\n",
        ["scenarios[0].params.at_s (scenario 'fault'): Input should be a finite number"],
        id="infinite-at-s",
    ),
    pytest.param(
        OK_HEAD + "scenarios:\n  - name: backend-closes-first\n    params: {watch_s: 1.0e+300}\n",
        ["scenarios[0].params.watch_s", "less than or equal to 600"],
        id="watch-s-without-end",
    ),
]


@pytest.mark.parametrize(("text", "parts"), MATRICES)
def test_malformed_matrix_file(cli: Cli, text: str, parts: list[str]) -> None:
    path = cli.tmp / "bad.yaml"
    path.write_text(text)
    err = cli.refused(cli("matrix", str(path)), *parts)
    assert f"error: {path}" in err  # the file is named first


def test_matrix_file_that_does_not_exist(cli: Cli) -> None:
    missing = cli.tmp / "nope.yaml"
    cli.refused(
        cli("matrix", str(missing)),
        f"{missing}: cannot read the matrix file (No such file or directory)",
        "Give the path of a YAML matrix file, e.g. one of",
        "default.yaml",
    )


# --- options of `run` and `reproduce` ---------------------------------------------------

OPTIONS = [
    pytest.param(
        ["--haproxy", "debian:buster"],
        ["--haproxy: unknown Debian release 'buster'", "Known: debian:bullseye (2.2.9)"],
        id="debian-release-unknown",
    ),
    pytest.param(
        ["--haproxy", "nonsense"],
        ["--haproxy: 'nonsense' is not a version spec", "Write one of debian:<release>"],
        id="spec-without-kind",
    ),
    pytest.param(
        ["--haproxy", "source:9.9.9"],
        ["--haproxy: no pinned tarball for HAProxy '9.9.9'", "Add an entry with its sha256"],
        id="source-not-in-catalogue",
    ),
    pytest.param(
        ["--haproxy", "tarball:/nope.tar.gz@2.6.99"],
        ["--haproxy: tarball '/nope.tar.gz' does not exist", "Give the path of an HAProxy"],
        id="tarball-missing",
    ),
    pytest.param(
        ["--haproxy", "tarball:/nope.tar.gz"],
        ["--haproxy: 'tarball:/nope.tar.gz' needs an explicit version", "@2.6.15"],
        id="tarball-without-version",
    ),
    pytest.param(
        ["--scenario", "nope"],
        ["--scenario: unknown scenario 'nope'", "Known: smoke"],
        id="unknown-scenario",
    ),
    pytest.param(
        ["--duration", "-5"],
        ["--duration -5: load duration per cell (seconds) must be > 0 and <= 600"],
        id="negative-duration",
    ),
    pytest.param(
        ["--duration", "1e9"],
        ["--duration 1e+09:", "must be > 0 and <= 600", "(default --duration 10)"],
        id="absurd-duration",
    ),
    pytest.param(
        ["--users", "0"],
        ["--users 0: concurrent Locust users", "must be >= 1 and <= 20000", "default --users"],
        id="zero-users",
    ),
    pytest.param(
        ["--rate", "0"],
        ["--rate 0: requests per second (open loop) must be > 0", "(default --rate 200)"],
        id="zero-rate",
    ),
]


@pytest.mark.parametrize(("args", "parts"), OPTIONS)
def test_malformed_run_option(cli: Cli, args: list[str], parts: list[str]) -> None:
    # One option changed in a run that would otherwise start.
    options = {"--haproxy": "debian:bookworm", "--duration": "1"}
    options.update(zip(args[::2], args[1::2], strict=True))
    cli.refused(cli("run", *[a for pair in options.items() for a in pair]), *parts)


def test_reproduce_with_zero_repetitions(cli: Cli) -> None:
    cli.refused(
        cli(
            "reproduce",
            "--a",
            "debian:bullseye",
            "--b",
            "debian:bookworm",
            "--scenario",
            "smoke",
            "--repetitions",
            "0",
        ),
        "repetitions: Input should be greater than or equal to 1 (got 0)",
        "must be >= 1 and <= 100",
    )


def test_reproduce_a_version_against_itself(cli: Cli) -> None:
    cli.refused(
        cli("reproduce", "--a", "debian:bookworm", "--b", "debian:bookworm", "--scenario", "smoke"),
        "versions lists 'debian:bookworm' more than once",
        "List each version once",
    )


def test_images_with_a_bad_spec(cli: Cli) -> None:
    cli.refused(cli("images", "--haproxy", "debian:buster"), "unknown Debian release 'buster'")


# --- tarballs ---------------------------------------------------------------------------


def _tarball(path: Path, files: dict[str, str]) -> Path:
    tree = path.parent / f"tree-{uuid.uuid4().hex[:6]}"
    for name, text in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    with tarfile.open(path, "w:gz") as tar:
        for top in tree.iterdir():
            tar.add(top, arcname=top.name)
    return path


def test_tarball_that_is_not_a_tarball(cli: Cli) -> None:
    fake = cli.tmp / "haproxy-2.6.15-patched.tar.gz"
    fake.write_text("<html>404 Not Found</html>\n")  # what a failed download leaves
    cli.refused(
        cli("run", "--haproxy", f"tarball:{fake}@2.6.15"),
        f"--haproxy: {fake} is not a .tar.gz archive",
        "Give HAProxy's source tarball",
    )


def test_tarball_without_a_source_tree(cli: Cli) -> None:
    tarball = _tarball(cli.tmp / "notes.tar.gz", {"notes/README": "hello\n"})
    cli.refused(
        cli("run", "--haproxy", f"tarball:{tarball}@2.6.15"),
        f"{tarball} holds no <dir>/Makefile: it is not an HAProxy source tree",
        "tar -czf NAME.tar.gz haproxy-X.Y.Z/",
    )


def test_tarball_of_another_version(cli: Cli) -> None:
    tarball = _tarball(
        cli.tmp / "haproxy-patched.tar.gz",
        {"haproxy-2.6.12/Makefile": "all:\n", "haproxy-2.6.12/VERSION": "2.6.12\n"},
    )
    cli.refused(
        cli("run", "--haproxy", f"tarball:{tarball}@2.6.15"),
        "says it is HAProxy 2.6.12 (its VERSION file), but the spec says @2.6.15",
        "Write tarball:<path>@2.6.12",
    )


def test_local_tarball_with_the_wrong_sha256(cli: Cli, repo_copy: Path) -> None:
    # A file dropped into (the copy's) haproxy/tarballs/ for a catalogue version.
    version = "2.6.15"
    local = repo_copy / "haproxy" / "tarballs" / f"haproxy-{version}.tar.gz"
    _tarball(local, {f"haproxy-{version}/Makefile": "all:\n"})
    actual = hashlib.sha256(local.read_bytes()).hexdigest()
    pinned = versions.catalogue().sources[version].sha256
    cli.refused(
        cli("run", "--haproxy", f"source:{version}", cwd=repo_copy),
        f"--haproxy: {local} has sha256 {actual}",
        f"pins {pinned} for HAProxy {version}",
        "Delete it (the pinned tarball is then downloaded)",
    )


# --- templates and haproxy -c -------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "token", "broken", "what"),
    [
        pytest.param(
            "haproxy/haproxy.cfg.j2", "{{ hx.maxconn }}", "{{ hx.maxconn }", "unexpected '}'",
            id="syntax-error",
        ),
        pytest.param(
            "haproxy/haproxy.cfg.j2", "{{ hx.maxconn }}", "{{ hx.maxconn.nope.deeper }}",
            "'int object' has no attribute 'nope'", id="undefined-name",
        ),
    ],
)  # fmt: skip
def test_broken_template(
    cli: Cli, repo_copy: Path, template: str, token: str, broken: str, what: str
) -> None:
    # Only a developer's edit breaks a template: break one in a copy, run the copy's CLI.
    path = repo_copy / template
    text = path.read_text()
    assert token in text, f"{template} changed: pick another token"
    line = text[: text.index(token)].count("\n") + 1
    path.write_text(text.replace(token, broken, 1))
    cli.refused(
        cli("run", "--haproxy", "debian:bookworm", "--duration", "1", cwd=repo_copy),
        f"error: {path} line {line}: the template does not render: {what}",
        "Fix the template there",
    )


def test_timeout_that_is_not_an_haproxy_time_value(cli: Cli) -> None:
    # Once caught only by haproxy -c, naming a line of the rendered file: now the spec
    # names the matrix key and its line, before anything is rendered.
    matrix = cli.tmp / "bad-timeout.yaml"
    matrix.write_text(
        OK_HEAD + "scenarios:\n  - name: half-close\n    params: {timeout_client: 30parsecs}\n"
    )
    cli.refused(
        cli("matrix", str(matrix)),
        f"{matrix} (line 5): scenarios[0].params.timeout_client (scenario 'half-close'): "
        "not an HAProxy time value",
        "got '30parsecs'",
        "e.g. '500ms'",
    )


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("option abortonclose\n    stats socket ipv4@0.0.0.0:9998 level admin",
         "is not words of a-z 0-9 . _ - separated by one space"),
        (".if 1", "is not words of a-z 0-9"),
        ("stats enable", "is not an allow-listed directive"),
        ("timeout client 1s", "'timeout client' goes in defaults or frontend, not in backend"),
    ],
)  # fmt: skip
def test_config_line_that_is_not_an_allow_listed_directive(cli: Cli, line: str, why: str) -> None:
    matrix = cli.tmp / "bad-config.yaml"
    entry = {"name": "fault", "config": {"backend": [line]}}
    matrix.write_text(OK_HEAD + "scenarios:\n  - name: fault\n    params:\n"
                      f"      config: {json.dumps(entry['config'])}\n")  # fmt: skip
    cli.refused(
        cli("matrix", str(matrix)),
        f"{matrix} (line 6): scenarios[0].params.config (scenario 'fault'): backend: ",
        why,
        "python -m harness scenarios config lists them",
        "e.g. {'backend': ['option abortonclose']}",
    )


def test_config_that_haproxy_rejects(cli: Cli, repo_copy: Path) -> None:
    # Typed parameters cannot make a config HAProxy rejects; a template edit still can.
    template = repo_copy / "haproxy" / "haproxy.cfg.j2"
    template.write_text(template.read_text().replace("option dontlognull", "option dontlognul"))
    err = cli.refused(
        cli("run", "--haproxy", "debian:bookworm", "--duration", "1", cwd=repo_copy),
        "rejects the rendered config",
        "unknown option 'dontlognul'",  # haproxy's own words, and line
        "config : parsing [/etc/harness/haproxy.cfg:",
        "nothing has been started.",
        kept=True,  # with the rendered haproxy.cfg the message points into
    )
    cfg = Path(re.search(r"error: (\S+/haproxy\.cfg): HAProxy", err)[1])
    line = int(re.search(r"haproxy\.cfg:(\d+)\]", err)[1])
    assert cfg.read_text().splitlines()[line - 1].strip() == "option dontlognul"


# --- Docker: networks and images -----------------------------------------------------------


def test_subnet_taken_by_another_docker_network(cli: Cli) -> None:
    # A one-slot pool: the subnet the harness picks for the cell is exactly this one.
    subnet = "10.231.7.0/24"
    name = f"bad-input-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "network", "create", "--subnet", subnet, "--label", "harness.test=bad-input",
         name],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    try:
        cli.refused(
            cli(
                "run",
                "--haproxy",
                "debian:bookworm",
                "--duration",
                "1",
                env={"HARNESS_SUBNET_POOL": subnet},
            ),
            f"Docker network {name!r} has subnet {subnet}, which overlaps {subnet}",
            "the subnet of cell 001-smoke-",
            f"remove it (docker network rm {name})",
            "set HARNESS_SUBNET_POOL to a free IPv4 range",
        )
    finally:
        subprocess.run(["docker", "network", "rm", name], check=True, capture_output=True)


def test_subnet_pool_that_is_not_a_network(cli: Cli) -> None:
    cli.refused(
        cli(
            "run",
            "--haproxy",
            "debian:bookworm",
            "--duration",
            "1",
            env={"HARNESS_SUBNET_POOL": "10.231.0.0/33"},
        ),
        "HARNESS_SUBNET_POOL='10.231.0.0/33'",
        "e.g. 10.213.0.0/16",
    )


def test_image_that_is_absent_and_cannot_be_pulled(cli: Cli) -> None:
    ref = "harness-bad-input.invalid/haproxy:2.6.15"  # .invalid never resolves
    t0 = time.monotonic()
    cli.refused(
        cli(
            "run",
            "--haproxy",
            f"image:{ref}",
            "--duration",
            "1",
            timeout=images.PULL_TIMEOUT_S + 60,
        ),
        f"image:{ref}: image {ref} is not present and cannot be pulled",
        "Pull or load it first ('docker load -i ...')",
    )
    assert time.monotonic() - t0 < 60  # no registry here: it fails, it does not hang


def test_image_without_haproxy(cli: Cli) -> None:
    cli.refused(
        cli("run", "--haproxy", "image:harness-base:bookworm", "--duration", "1"),
        "harness-base:bookworm: 'haproxy -vv' failed",
        "needs an image with haproxy on its PATH",
    )


def test_image_whose_haproxy_is_another_version(cli: Cli) -> None:
    real = images.haproxy_tag(versions.parse("debian:bookworm"))  # HAProxy 2.6.12
    fake = f"harness-bad-input-{uuid.uuid4().hex[:8]}:2.6.15"
    subprocess.run(["docker", "tag", real, fake], check=True, capture_output=True, timeout=60)
    try:
        cli.refused(
            cli("run", "--haproxy", f"image:{fake}", "--duration", "1"),
            f"image:{fake}: the image reports HAProxy 2.6.12 but the spec promises 2.6.15",
            "Fix the spec",
        )
    finally:
        subprocess.run(["docker", "rmi", fake], check=True, capture_output=True, timeout=60)


# --- the results folder ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("under-a-file", id="under-a-regular-file"),
        pytest.param("/proc/harness-results", id="in-proc"),
    ],
)
def test_results_folder_that_cannot_be_written(cli: Cli, where: str) -> None:
    # Tests run as root, and chmod does not stop root: these paths stop anyone.
    if where == "under-a-file":
        (cli.tmp / "a-file").write_text("")
        where = str(cli.tmp / "a-file" / "results")
    cli.refused(
        cli(
            "run", "--haproxy", "debian:bookworm", "--duration", "1", env={"HARNESS_RESULTS": where}
        ),
        f"HARNESS_RESULTS={where}: results cannot be written there",
        "Point HARNESS_RESULTS at a writable folder",
    )
    assert not Path(where).exists()


# --- report and rerun ----------------------------------------------------------------------------


def test_report_on_a_folder_that_is_not_a_run(cli: Cli) -> None:
    folder = cli.tmp / "somewhere"
    folder.mkdir()
    cli.refused(
        cli("report", str(folder)),
        f"{folder}: not a run folder (no run.json in it)",
        "Give the folder a run printed as 'results in ...'",
    )


def test_report_on_a_cell_folder(cli: Cli) -> None:
    cell = next((cli.results / EARLIER).glob("*/cell.json")).parent
    cli.refused(cli("report", str(cell)), "it is one cell of a run: give its parent folder")


def test_report_on_a_run_whose_run_json_is_damaged(cli: Cli) -> None:
    run = cli.tmp / "elsewhere" / "20250101T000000Z-damaged"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"run": "20250101T000000Z-damaged",\n')
    cli.refused(
        cli("report", str(run)),
        f"{run / 'run.json'} (line 2, column 1): not valid JSON",
        "Restore it, or run that cell or matrix again",
    )


def test_rerun_on_a_folder_that_is_not_a_cell(cli: Cli) -> None:
    run = cli.results / EARLIER
    cli.refused(
        cli("rerun", str(run)),
        f"{run}: not a cell folder (no cell.json in it)",
        "It holds these cells, give one of them: 001-smoke-2.6.12-debian-bookworm-abcdef-r1",
    )


def test_rerun_on_a_cell_whose_cell_json_is_damaged(cli: Cli) -> None:
    cell = cli.tmp / "elsewhere" / "001-smoke-2.6.12-debian-bookworm-abcdef-r1"
    cell.mkdir(parents=True)
    (cell / "cell.json").write_text("")
    cli.refused(
        cli("rerun", str(cell)),
        f"{cell / 'cell.json'} (line 1, column 1): not valid JSON",
        "Restore it, or run that cell or matrix again",
    )
    assert [p.name for p in cell.parent.iterdir()] == [cell.name]  # no re-run folder
