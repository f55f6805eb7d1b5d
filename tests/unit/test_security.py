"""Security properties that need no Docker.

1. What a cell's stack may do to the host: no published port, no privileged container,
   no host namespace, no Docker socket; each service exactly as harness/stack/security.py says
   (user, no capability but its own, no-new-privileges), so only the capture has any.
2. What may leak into a run folder: the host's CA bundle, pip credentials.
3. What hostile strings in a run folder (log lines, ids, params, labels, errors) can do
   to report.html and report.md.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from harness import ROOT, results
from harness.errors import CellError, SpecError
from harness.plan import spec
from harness.plan.scenarios import SCENARIOS
from harness.report import rebuild, tables
from harness.stack import compose, images, provenance, render, security
from harness.stack.images import HaproxyImage, ImageSet

DATA = Path(__file__).resolve().parents[1] / "data"

# --- 1. the compose file of every cell -------------------------------------------------------

# Namespaced per container (Docker refuses the others, or they would change the host's).
NAMESPACED_SYSCTL = re.compile(r"net\.(?:ipv4|ipv6)\.[\w.]+|net\.core\.somaxconn")
LOOPBACK = ("127.0.0.1", "[::1]")
HOST_NAMESPACES = ("pid", "ipc", "uts", "userns_mode", "cgroup")
FORBIDDEN_KEYS = ("privileged", "devices", "cgroup_parent", "device_cgroup_rules")
# Set from harness/stack/security.py alone, and checked against it below.
SECURITY_KEYS = ("user", "cap_add", "cap_drop", "security_opt", "read_only", "cgroup")


def _cells() -> list[spec.Cell]:
    """Every cell of every shipped matrix, and every scenario at its defaults and at every
    combination of its listed choices, plus the knobs that add sysctls or lines."""
    cells = [c for p in sorted((ROOT / "matrices").glob("*.yaml")) for c in spec.load(p, "t").cells]
    entries: list[dict[str, Any]] = []
    for name, scenario in SCENARIOS.items():
        keys = list(scenario.choices)
        for values in itertools.product(*(scenario.choices[k] for k in keys)):
            params = dict(zip(keys, values, strict=True))
            try:
                scenario.resolve(params, "test")
            except SpecError:
                continue  # a combination the scenario itself refuses (e.g. TLS variant, no TLS)
            entries.append({"name": name, "params": params})
    entries.append(
        {"name": "kernel-knobs", "params": {"port_range": "1024 65000", "nolinger": True}}
    )
    # HTTP/2 cells need their generator, h2load (spec refuses Locust on an h2 frontend)
    h2 = [e for e in entries if e["params"].get("http2", "off") != "off"]
    raw = {"name": "security", "versions": ["debian:bookworm"],
           "scenarios": [e for e in entries if e not in h2]}  # fmt: skip
    h2_raw = {"name": "security-h2", "versions": ["debian:bookworm"], "scenarios": h2,
              "load": {"generator": "h2load"}}  # fmt: skip
    return cells + spec.expand(raw, "t").cells + spec.expand(h2_raw, "t").cells


def _compose_doc(cell: spec.Cell) -> dict[str, Any]:
    project = render.project_name(cell)
    net = render.Network.for_project(project)
    hx = HaproxyImage(cell.version, "harness-haproxy:x", "sha256:x", "x", "")
    support = {n: f"harness-{n}:latest" for n in ("backend", "client", "client-native", "observer")}
    knobs = SCENARIOS[cell.scenario].knobs(cell.params)
    text = render.compose_yaml(
        cell, knobs, net, ImageSet({cell.version.text: hx}, support), hx, project, ["locust"]
    )
    return yaml.safe_load(text)


def _port_host_ip(port: Any) -> str | None:
    """The host address a `ports` entry binds (None: every address)."""
    if isinstance(port, dict):
        return port.get("host_ip")
    parts = str(port).rsplit(":", 2)  # [ip:]host:container, or container alone
    return parts[0] if len(parts) == 3 else None


def _stack_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    for name, svc in doc["services"].items():
        for port in svc.get("ports") or []:
            if _port_host_ip(port) not in LOOPBACK:
                problems.append(f"{name}: port {port!r} is published beyond loopback")
        for key in FORBIDDEN_KEYS:
            if svc.get(key):
                problems.append(f"{name}: {key}: {svc[key]!r}")
        mode = svc.get("network_mode")
        if mode is not None and not str(mode).startswith("service:"):
            problems.append(f"{name}: network_mode {mode!r} (only another service's namespace)")
        for key in HOST_NAMESPACES:
            if svc.get(key) == "host":
                problems.append(f"{name}: {key}: host")
        for volume in svc.get("volumes") or []:
            source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
            # only the cell's own folder is mounted: never the Docker socket or a host path
            inside = (source == "." or source.startswith("./")) and ".." not in Path(source).parts
            if "docker.sock" in str(volume) or not inside:
                problems.append(f"{name}: volume {volume!r} mounts from outside the cell folder")
        wanted = security.service_security(name)
        for key in SECURITY_KEYS:
            if svc.get(key) != wanted.get(key):
                problems.append(
                    f"{name}: {key}: {svc.get(key)!r}, security.py says {wanted.get(key)!r}"
                )
        sysctls = svc.get("sysctls") or {}
        keys = sysctls if isinstance(sysctls, dict) else [s.split("=")[0] for s in sysctls]
        problems += [
            f"{name}: sysctl {k} is not a namespaced net.* one"
            for k in keys
            if not NAMESPACED_SYSCTL.fullmatch(k)
        ]
    for name, network in (doc.get("networks") or {}).items():
        if (network or {}).get("driver") in ("host", "macvlan", "ipvlan"):
            problems.append(f"network {name}: driver {network['driver']} reaches the host's LAN")
    return problems


def test_every_cell_stack_stays_off_the_host() -> None:
    cells = _cells()
    assert {c.scenario for c in cells} == set(SCENARIOS)
    assert any(c.params.get("port_range") for c in cells)  # the sysctl-heavy variant too
    for cell in cells:
        doc = _compose_doc(cell)
        assert "capture" in doc["services"], cell.id  # so the cap check below is not vacuous
        assert _stack_problems(doc) == [], cell.id


def test_security_policy_is_least_privilege_and_one_for_compose_and_docker_run() -> None:
    for service in ("haproxy", "backend", "calibration", "client", "census-haproxy", "capture"):
        keys = security.service_security(service)
        assert keys["cap_drop"] == ["ALL"] and keys["cgroup"] == "private", service
        # the compose keys and the docker run flags (haproxy -vv, -c) say the same
        flags = security.docker_run_flags(service)
        assert flags[flags.index("--user") + 1] == keys["user"], service
        assert [f.split("=")[1] for f in flags if f.startswith("--cap-add=")] == keys.get(
            "cap_add", []
        )
        assert ("--security-opt" in flags) == ("security_opt" in keys), service
    # only the capture has a capability, and it alone lacks no-new-privileges
    granted = {s for s, p in security.POLICIES.items() if p.cap_add or not p.no_new_privileges}
    assert granted == {"capture"}
    assert security.user("client") == f"{os.getuid()}:{os.getgid()}"
    assert all(security.user(s) not in ("root", "0", "0:0") for s in ("haproxy", "backend"))
    with pytest.raises(KeyError, match="no policy for service 'sidecar'"):
        security.policy("sidecar")


def test_stack_check_catches_each_way_onto_the_host() -> None:
    bad = {
        "services": {
            "haproxy": {
                "ports": ["8080:8080", "127.0.0.1:9000:9000", {"target": 80, "published": 80}],
                "privileged": True,
                "pid": "host",
                "volumes": [
                    "/var/run/docker.sock:/var/run/docker.sock",
                    "./ok:/ok",
                    "./a/../../x:/x",
                ],
                "sysctls": ["kernel.shmmax=1", "net.ipv4.tcp_tw_reuse=1"],
                "cap_add": ["NET_ADMIN"],
            },
            "backend": {"network_mode": "host", "security_opt": ["seccomp:unconfined"]},
            "capture": {"cap_add": ["NET_RAW", "NET_ADMIN", "SYS_ADMIN"], "cap_drop": ["ALL"]},
        }
    }
    problems = "\n".join(_stack_problems(bad))
    for expected in (
        "port '8080:8080'",
        "port {'target': 80",
        "privileged",
        "pid: host",
        "docker.sock",
        "'./a/../../x:/x' mounts from outside",
        "sysctl kernel.shmmax",
        "haproxy: cap_add: ['NET_ADMIN']",
        "haproxy: user: None, security.py says 'haproxy'",  # root, the image's default
        "network_mode 'host'",
        "backend: security_opt: ['seccomp:unconfined']",
        "SYS_ADMIN",
    ):
        assert expected in problems
    assert "9000" not in problems and "tcp_tw_reuse" not in problems and "./ok" not in problems


# --- 2. nothing of the host's CA bundle or pip credentials in a run folder --------------------

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PEM = re.compile(r"-----BEGIN CERTIFICATE-----\n(.*?)\n-----END CERTIFICATE-----", re.S)
PIP_URL_ENV = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "HARNESS_PIP_INDEX_URL")
PIP_URL_KEYS = ("index-url", "extra-index-url", "find-links")


def _bundle_needles(bundle: Path) -> dict[str, bytes]:
    """A body line from the bundle's first and last certificates: public roots come first,
    a TLS-intercepting proxy's own CA is usually appended last."""
    blocks = PEM.findall(bundle.read_text(errors="replace")) if bundle.is_file() else []
    needles = {}
    for which, block in (("first", blocks[:1]), ("last", blocks[1:][-1:])):
        for body in block:
            lines = body.splitlines()
            needles[f"{bundle} ({which} certificate)"] = lines[len(lines) // 2].encode()
    return needles


def _host_secrets() -> dict[str, bytes]:
    """What must never reach a run folder: the CA bundles pip uses and URL credentials."""
    config = images._host_pip_config()
    needles = _bundle_needles(CA_BUNDLE)
    for cert in {
        os.environ.get("PIP_CERT"),
        os.environ.get("HARNESS_PIP_CERT"),
        config.get("cert"),
    }:
        if cert and cert != "none":
            needles.update(_bundle_needles(Path(cert)))
    urls = [os.environ.get(k, "") for k in PIP_URL_ENV]
    urls += [config.get(k, "") for k in PIP_URL_KEYS]
    for url in " ".join(urls).split():
        userinfo, at, host = urlsplit(url).netloc.rpartition("@")
        if at:  # as it would appear in a leaked URL
            needles[f"credentials for {host}"] = f"{userinfo}@{host}".encode()
    return needles


def _leaks(folder: Path, needles: dict[str, bytes]) -> list[str]:
    return [
        f"{path.relative_to(folder)}: {what}"
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        for what, needle in needles.items()
        if needle in path.read_bytes()
    ]


def test_recorded_run_folders_hold_no_host_ca_or_pip_credentials(tmp_path: Path) -> None:
    needles = _host_secrets()
    # a rebuild writes report.md/.html, results.csv/.json, index.md from a run folder
    run_dir = tmp_path / "20261124T230400Z-default"
    shutil.copytree(DATA / "run-chunked-stall", run_dir)
    rebuild.rebuild(run_dir)
    assert (run_dir / "report.html").exists()
    assert _leaks(DATA, needles) == []
    assert _leaks(tmp_path, needles) == []


def test_leak_scan_finds_a_planted_ca_block(tmp_path: Path) -> None:
    bundle = tmp_path / "corp-ca.pem"
    body = "\n".join(f"{i:02d}" + "A" * 62 for i in range(9))
    bundle.write_text(f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
    needles = _bundle_needles(bundle)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "images.log").write_text(f"noise\n{body}\n")
    assert _leaks(tmp_path / "run", needles) == [f"images.log: {bundle} (first certificate)"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://alice:s3cret@pypi.corp/simple", "https://alice:****@pypi.corp/simple"),
        ("--index-url=https://t0ken@pypi.corp/simple", "--index-url=https://****@pypi.corp/simple"),
        ("http://u:p@ss@mirror/debian x", "http://u:****@mirror/debian x"),  # '@' in password
        (
            "Looking in indexes: https://a:b@one/simple, https://c:d@two/simple",
            "Looking in indexes: https://a:****@one/simple, https://c:****@two/simple",
        ),
        (
            "https://pypi.org/simple git@github.com:x/y",  # nothing to hide: unchanged
            "https://pypi.org/simple git@github.com:x/y",
        ),
    ],
)
def test_redact_hides_url_credentials(text: str, expected: str) -> None:
    assert compose.redact(text) == expected


def test_command_log_and_errors_never_carry_url_credentials(tmp_path: Path) -> None:
    log = compose.CommandLog(tmp_path / "images.log")
    url = "https://alice:s3cret@pypi.corp/simple"
    script = "import sys; print('Looking in indexes: ' + sys.argv[1]); sys.exit(3)"
    with pytest.raises(CellError) as failed:
        log.run([sys.executable, "-c", script, url], timeout=30)
    written = log.path.read_text()
    assert "s3cret" not in written and "s3cret" not in str(failed.value)
    assert "https://alice:****@pypi.corp/simple" in written  # still says which index
    # the caller's own copy of the output is untouched: only the log is redacted
    proc = log.run([sys.executable, "-c", "import sys; print(sys.argv[1])", url], timeout=30)
    assert url in proc.stdout.decode()


def test_provenance_records_no_pip_settings_and_no_url_credentials(monkeypatch) -> None:
    secret_url = "https://alice:s3cret@pypi.corp/simple"
    monkeypatch.setenv("PIP_INDEX_URL", secret_url)
    monkeypatch.setenv("HARNESS_PIP_INDEX_URL", secret_url)
    monkeypatch.setenv("PIP_CERT", str(CA_BUNDLE))

    class Engine:
        def version(self) -> dict[str, str]:
            return {"Version": "27.0"}

    monkeypatch.setattr(provenance, "client", Engine)
    # a command whose answer carries a URL with credentials (a git remote, say)
    monkeypatch.setattr(provenance, "_command", lambda *argv: secret_url)
    collected = provenance.collect()
    found = json.dumps(collected)
    assert "s3cret" not in found
    assert collected["harness_commit"] == "https://alice:****@pypi.corp/simple"  # not dropped
    assert not any("pip" in key.lower() for key in collected)  # no pip setting recorded
    assert "BEGIN CERTIFICATE" not in found and str(CA_BUNDLE) not in found


# --- 3. hostile strings in a run folder ------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
# as report.md shows them: text, each tag's "<" escaped (a CommonMark renderer would
# otherwise run them as HTML: tests/unit/test_matrix_description.py)
MD_SCRIPT, MD_IMG = tables.md_text(SCRIPT), tables.md_text(IMG)
HOSTILE = f"{IMG} & `tick` | pipe\nnewline {SCRIPT}"
RUN_NAME = "20261124T230400Z-default"
CELL_OK = "009-chunked-stall-2.6.12-debian-bookworm-5d2a4b-r1"
CELL_BASE = "008-chunked-stall-2.2.9-debian-bullseye-5d2a4b-r1"
CELL_FAILED = "010-chunked-stall-3.0.11-debian-trixie-5d2a4b-r1"


def _edit_json(path: Path, edit: Any) -> None:
    record = results.read_json(path)
    edit(record)
    results.write_json(path, record)


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("results") / RUN_NAME
    shutil.copytree(DATA / "run-chunked-stall", run_dir)
    ok = run_dir / CELL_OK

    def params(record: dict[str, Any]) -> None:
        # on every cell: they still compare. A record refuses control characters in what
        # it names (tests/unit/test_record.py), so the newline is a space here.
        record["params"]["evil"] = HOSTILE.replace("\n", " ")

    for cell in (CELL_OK, CELL_BASE, CELL_FAILED):
        _edit_json(run_dir / cell / "cell.json", params)
    _edit_json(ok / "cell.json", lambda r: r["version"].update(label=f"2.6.12 {SCRIPT} | x {IMG}"))

    def failed(record: dict[str, Any]) -> None:
        record["status"] = "failed"
        record["error"] = f"{SCRIPT} | {IMG}\nsecond line & `tick` {SCRIPT}"

    _edit_json(run_dir / CELL_FAILED / "cell.json", failed)

    # haproxy.log: a parseable line whose unique id, server and request are hostile, and
    # one that does not parse at all
    log = ok / "haproxy.log"
    line = log.read_text().splitlines()[0]
    fields = line.split(" ")
    fields[3] = f"be_app/app{SCRIPT}"
    fields[10] = SCRIPT
    hostile_line = " ".join(fields[:11]) + f' "GET /{IMG}|`x`& HTTP/1.1"'
    with log.open("a") as out:
        out.write(f"{hostile_line}\n{HOSTILE}\n")

    # probe.jsonl: one sample joined to that line, with a hostile end type and error
    probe = ok / "probe.jsonl"
    samples = [json.loads(s) for s in probe.read_text().splitlines()]
    samples[0].update(unique_ids=[SCRIPT], end=f"fin{SCRIPT}|x\ny", error=HOSTILE)
    probe.write_text("".join(json.dumps(s) + "\n" for s in samples))

    # the client's own failures, with the hostile id
    (ok / "client_failures.jsonl").write_text(
        json.dumps({"status": 503, "unique_id": SCRIPT, "error": HOSTILE}) + "\n"
    )
    vv = ok / "haproxy-vv.txt"
    vv.write_text(f"HAProxy {SCRIPT}\n```\n{IMG}\n" + vv.read_text())
    rebuild.rebuild(run_dir)
    return run_dir


def test_hostile_content_reaches_the_report(hostile_run: Path) -> None:
    # else the escaping tests below would pass on a report that dropped the data
    record = results.read_json(hostile_run / CELL_OK / "cell.json")
    assert record["metrics"]["probe"]["ends"][f"fin{SCRIPT}|x\ny"] == 1
    assert record["metrics"]["client_failures"]["matched_in_log"] == 1
    assert record["metrics"]["haproxy_unparsed_lines"] == 2  # the hostile line's two lines
    text = (hostile_run / "report.md").read_text()
    assert SCRIPT in text and "onerror=alert(1)" in text


def test_html_report_escapes_every_hostile_string(hostile_run: Path) -> None:
    page = (hostile_run / "report.html").read_text()
    assert not re.search(r"<\s*(?:script|img)\b", page, re.I)
    assert not re.search(r"<[^>]*\bon[a-z]+\s*=", page, re.I)  # no event handler attribute
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4  # label, params, error...
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    # every '&' starts an entity: a bare one from the data would have been left unescaped
    assert re.findall(r"&(?!(?:[a-zA-Z]+|#\d+|#x[0-9a-fA-F]+);)", page) == []
    svgs = "".join(re.findall(r"<svg\b.*?</svg>", page, re.S))
    assert "2.6.12 &lt;script&gt;" in svgs  # plot legends and tick labels too
    assert "not drawn" not in page


def _tables(text: str) -> list[list[str]]:
    """Markdown tables: runs of lines starting with '|'."""
    tables: list[list[str]] = []
    previous = ""
    for line in text.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    return tables


def _cells_of(row: str) -> list[str]:
    return re.split(r"(?<!\\)\|", row)[1:-1]  # an escaped '\|' is not a separator


def test_markdown_tables_hold_hostile_values_in_their_cells(hostile_run: Path) -> None:
    text = (hostile_run / "report.md").read_text()
    tables = _tables(text)
    assert len(tables) >= 4  # verdicts, per-cell, per chunk size, images
    for table in tables:
        width = len(_cells_of(table[0]))
        assert re.fullmatch(r"\|(?:[-:]+\|)+", table[1]), table[:2]
        assert all(len(_cells_of(row)) == width for row in table), table
    # the per-cell table: one row per cell (a newline in a value used to add rows)
    [per_cell] = [t for t in tables if t[0].startswith("| HAProxy ")]
    assert len(per_cell) == 2 + 3
    row = next(r for r in per_cell if "2.6.12" in r)
    assert f"2.6.12 {MD_SCRIPT} \\| x {MD_IMG}" in row  # the label, whole, in its own cell
    ends = _cells_of(row)[[c.strip() for c in _cells_of(per_cell[0])].index("ends")]
    assert f"fin{MD_SCRIPT}\\|x y×1" in ends
    verdicts = next(t for t in tables if t[0].startswith("| comparison "))
    assert any(f"2.6.12 {MD_SCRIPT} \\| x {MD_IMG}" in r for r in verdicts[2:])
    chunks = next(t for t in tables if t[0].split("|")[1].strip() == "chunk size")
    assert f"2.6.12 {MD_SCRIPT} \\| x {MD_IMG} tls=off" in chunks[0]


def test_markdown_code_spans_and_blocks_are_not_broken_out_of(hostile_run: Path) -> None:
    lines = (hostile_run / "report.md").read_text().splitlines()
    params = [line for line in lines if line.startswith("Parameters: ")]
    assert params and all(line.startswith("Parameters: ``") for line in params)
    assert all("evil=" in line and "newline" in line for line in params)  # one line each
    assert not any(line.startswith("newline") or line.startswith("second line") for line in lines)
    [failed] = [line for line in lines if line.startswith(f"- `{CELL_FAILED}`")]
    assert failed.endswith(f"{MD_SCRIPT} | {MD_IMG}")  # the first line of the error only
    # the hostile haproxy -vv head sits inside a fence longer than its own "```"
    start = lines.index(f"HAProxy {SCRIPT}") - 1
    assert lines[start] == "````" and lines[start + 2] == "```"
    assert lines.index("````", start + 1) == start + 13  # the 12 head lines, all inside


def test_csv_and_json_keep_hostile_values_intact(hostile_run: Path) -> None:
    # machine-readable outputs are data, not markup: exact values, properly quoted
    rows = list(csv.DictReader((hostile_run / "results.csv").open()))
    assert len(rows) == 3
    assert rows[1]["param_evil"] == HOSTILE.replace("\n", " ")
    records = json.loads((hostile_run / "results.json").read_text())
    assert records[2]["error"].startswith(SCRIPT)
