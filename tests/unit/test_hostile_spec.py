"""Hostile matrix files: a value is refused by the spec, or it renders files whose
structure the harness alone wrote.

1. A corpus of known attacks and crashes (each once reached a rendered file or a
   traceback): refused with SpecError, naming the key.
2. A property over generated matrices (hypothesis): ``spec.expand`` either raises
   SpecError, or every cell renders a compose.yaml with no key, service or option the
   harness does not write, and a haproxy.cfg whose every line is one the template
   writes. ``HARNESS_FUZZ_EXAMPLES`` sets the number of matrices (``make fuzz``: 10,000).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import SpecError
from harness.plan import spec
from harness.plan.scenarios import SCENARIOS
from harness.stack import compose_file, render
from harness.stack.images import HaproxyImage, ImageSet

# --- 1. the corpus ---------------------------------------------------------------------------

YAML_BREAKOUT = (
    "1024 65000\n    privileged: true\n    pid: host\n    post_start:\n      - command: id"
)
CFG_BREAKOUT = "30s\nglobal\n    stats socket ipv4@0.0.0.0:9998 level admin\n"
CORPUS = [
    ("kernel-knobs", "port_range", YAML_BREAKOUT, "not two port numbers"),
    ("kernel-knobs", "port_range", "60000 1024", "1024 <= low < high <= 65535"),
    ("kernel-knobs", "port_range", "80 1024", "1024 <= low < high <= 65535"),
    ("kernel-knobs", "port_range", "1024  65000", "not two port numbers"),
    ("kernel-knobs", "port_range", "1024 65000 # x", "not two port numbers"),
    ("half-close", "timeout_client", CFG_BREAKOUT, "not an HAProxy time value"),
    ("half-close", "timeout_client", ".if 0", "not an HAProxy time value"),
    ("half-close", "timeout_client", "30s # x", "not an HAProxy time value"),
    ("half-close", "timeout_client", '30s"', "not an HAProxy time value"),
    ("half-close", "timeout_client", "0s", "above 0 and at most 1h"),
    ("half-close", "timeout_client", "25h", "above 0 and at most 1h"),
    ("half-close", "deadline_s", float("nan"), "finite number"),
    ("half-close", "deadline_s", float("inf"), "finite number"),
    ("connect-timeout", "timeout_connect", "banana", "not an HAProxy time value"),
    ("connect-timeout", "timeout_connect", "500ms\n", "not an HAProxy time value"),
    ("backend-closes-first", "haproxy_keepalive", "2s\nbackend x", "not an HAProxy time value"),
    ("backend-closes-first", "client_fin", "off\nglobal", "not an HAProxy time value"),
    # The fin and tunnel timeouts: the same grammar and bounds as timeout_client.
    *[
        ("backend-closes-first", key, value, why)
        for key in ("client_fin", "server_fin", "tunnel")
        for value, why in (
            (CFG_BREAKOUT, "not an HAProxy time value"),
            (".if 0", "not an HAProxy time value"),
            ("1s # x", "not an HAProxy time value"),
            ('1s"', "not an HAProxy time value"),
            ("1s\nbackend x", "not an HAProxy time value"),
            ("OFF", "not an HAProxy time value"),
            ("0s", "above 0 and at most 1h"),
            ("25h", "above 0 and at most 1h"),
            (1, "valid string"),
        )
    ],
    # mode is a choice of two words: nothing else reaches "mode ..." in defaults.
    *[
        (scenario, "mode", value, "Input should be 'http' or 'tcp'")
        for scenario in ("half-close", "keepalive-vs-close", "backend-closes-first")
        for value in ("tcp\nglobal", "tcp # x", "health", "TCP", "http ", True)
    ],
    ("smoke", "mode", "tcp", "has no parameter 'mode'"),
    # Explicit config lines: each attempt to write more than an allow-listed directive.
    *[
        ("fault", "config", {"backend": [line]}, why)
        for line, why in (
            ("option abortonclose\nglobal", "not words of a-z 0-9"),
            ("option abortonclose\r\nstats socket ipv4@0.0.0.0:9998", "not words of a-z 0-9"),
            ("option abortonclose # x", "not words of a-z 0-9"),
            ("#option abortonclose", "not words of a-z 0-9"),
            ('option "abortonclose"', "not words of a-z 0-9"),
            ("option 'abortonclose'", "not words of a-z 0-9"),
            (".if streq(a,a)", "not words of a-z 0-9"),
            (".if 1", "not words of a-z 0-9"),
            ("timeout server ${T}", "not words of a-z 0-9"),
            ('timeout server "$T"', "not words of a-z 0-9"),
            ("option\tabortonclose", "not words of a-z 0-9"),
            ("option  abortonclose", "not words of a-z 0-9"),
            (" option abortonclose", "not words of a-z 0-9"),
            ("option abortonclose\u2028global", "not words of a-z 0-9"),
            ("Option Abortonclose", "not words of a-z 0-9"),
            ("option abortonclose\\", "not words of a-z 0-9"),
            ("server evil 10.0.0.1:80", "not words of a-z 0-9"),
            ("use_backend evil", "not an allow-listed directive"),
            ("errorfile 503 /etc/passwd", "not words of a-z 0-9"),
            ("stats enable", "not an allow-listed directive"),
            ("log 127.0.0.1 local0", "not an allow-listed directive"),
            ("option abortonclose extra", "takes 0 argument(s), got 1"),
            ("timeout server", "takes 1 argument(s), got 0"),
            ("timeout server 1s 2s", "takes 1 argument(s), got 2"),
            ("timeout server 0s", "must be above 0 and at most 1h"),
            ("timeout server 2h", "must be above 0 and at most 1h"),
            ("timeout server 5x", "not an HAProxy time value"),
            ("retries 101", "not an integer from 0 to 100"),
            ("retries 1e3", "not an integer from 0 to 100"),
            ("retries 9999999999999", "not an integer from 0 to 100"),
            ("balance uri", "not one of roundrobin"),
            ("option dontlognull", "goes in defaults or frontend, not in backend"),
            ("timeout client 1s", "goes in defaults or frontend, not in backend"),
            ("nbthread 2", "goes in global, not in backend"),
            ("x" * 5000, "not words of a-z 0-9"),
        )
    ],
    ("fault", "config", {"backend": "option abortonclose"}, "valid list"),
    ("fault", "config", {"backend": [1]}, "valid string"),
    ("fault", "config", {"listen": ["option abortonclose"]}, "Extra inputs are not permitted"),
    ("fault", "config", ["option abortonclose"], "valid dictionary"),
    ("fault", "config", "backend: option abortonclose", "valid dictionary"),
    ("fault", "config", {"backend": ["retries 1"] * 33}, "at most 32 items"),
    ("smoke", "config", {"global": ["maxconn 0"]}, "not an integer from 1 to 1000000"),
    ("smoke", "config", {"frontend": ["option redispatch"]}, "goes in defaults or backend"),
    ("backend-closes-first", "watch_s", 1e300, "less than or equal to 600"),
    ("backend-closes-first", "hold_s", float("inf"), "finite number"),
    ("chunked-stall", "chunk_max", 1_000_000, "less than or equal to 65536"),
    ("chunked-stall", "per_size", 600, "plan 2400 probe connections"),
    ("chunked-stall", "chunk_sizes", [32, 0], "greater than or equal to 1"),
    ("chunked-stall", "chunk_sizes", list(range(1, 130)), "at most 128 items"),
    ("chunked-stall", "chunk_sizes", [32, 40, 32], "repeats a size"),
    ("chunked-stall", "chunk_sizes", 32, "valid list"),
    ("chunked-stall", "size", "50000", "valid integer"),
    ("smoke", "size", "1e20", "valid integer"),
    ("smoke", "size", 10**20, "less than or equal to 100000000"),
    ("smoke", "size", 10**500, "a number of about 501 digits"),
    ("smoke", "size", 3.0, "valid integer"),
    ("smoke", "keepalive", "yes", "valid boolean"),
    ("smoke", "keepalive", 1, "valid boolean"),
    ("smoke", "http_reuse", "safe\n    option httpclose", "'never', 'safe', 'aggressive'"),
    ("fault", "at_s", float("inf"), "finite number"),
    ("fault", "at_s", -1, "greater than 0"),
    ("server-pool", "pool_max_conn", -2, "greater than or equal to -1"),
    ("server-pool", "maxconn", [1, 2], "valid integer"),
    ("half-close", "variant", {"a": 1}, "Input should be 'fin'"),
]


@pytest.mark.parametrize(("scenario", "key", "value", "why"), CORPUS)
def test_hostile_parameter_is_refused_naming_the_key(
    scenario: str, key: str, value: Any, why: str
) -> None:
    raw = {"name": "t", "versions": ["debian:bookworm"],
           "scenarios": [{"name": scenario, "params": {key: value}}]}  # fmt: skip
    with pytest.raises(SpecError) as err:
        spec.expand(raw, "t", Path("shared.yaml"), yaml.safe_dump(raw))
    message = str(err.value)
    # The key itself, or (a rule across parameters) the entry and the key in the words.
    assert f"scenarios[0].params.{key}" in message or (
        f"scenarios[0]: scenario '{scenario}'" in message and key in message
    ), message
    assert why in message, message
    assert "shared.yaml (line " in message, message
    assert len(message) < 600, message  # a short message, whatever the input


# --- 2. the property -------------------------------------------------------------------------

# Every line haproxy.cfg.j2 can write starts with one of these (comments aside).
CFG_DIRECTIVES = re.compile(
    r"(global|defaults|frontend fe_http|backend be_app|log |maxconn |stats socket "
    r"ipv4@127\.0\.0\.1:9999 level admin$|tune\.bufsize \d+$|tune\.sndbuf\.client \d+$|"
    r"mode (http|tcp)$|log-format |unique-id-format |option (dontlognull|nolinger|"
    r"abortonclose|http-server-close|httpclose|redispatch)$|timeout (connect|client|server|"
    r"http-keep-alive|client-fin|server-fin|tunnel) "
    r"\d+(us|ms|s|m|h|d)?$|retries \d+$|bind :(8080|8443)|http-after-response |"
    r"default_backend be_app$|http-reuse (never|safe|aggressive|always)$|server app[2-4]? |"
    # a config parameter's lines: allow-listed keywords, typed arguments
    r"(no )?option [a-z-]+$|timeout [a-z-]+ \d+(us|ms|s|m|h|d)?$|hard-stop-after "
    r"\d+(us|ms|s|m|h|d)?$|(maxconn|fullconn|nbthread|tune\.[a-z.]+) \d+$|"
    r"balance (roundrobin|static-rr|leastconn|first|source)$)"
)
SERVICES = {
    "backend", "haproxy", "calibration", "client", "census-client", "census-haproxy",
    "census-calibration", "census-backend", "capture",
}  # fmt: skip
ENV_KEY = re.compile(r"(BACKEND|LOAD|PROBE|CENSUS)_[A-Z_]+")
SYSCTLS = {"net.ipv4.tcp_tw_reuse", "net.ipv4.ip_local_port_range"}

HOSTILE_TEXT = [
    "", " ", "\n", "30s\nglobal", "off", "1s", "500ms", "1024 65000", "60000 1024",
    "1024 65000\n    privileged: true", "# x", '"', "'", "{{ x }}", "${HOME}", "$(id)",
    "*alias", "&anchor", "- item", "key: value", "\x00", "\u2028", "é", "true", "0x10",
]  # fmt: skip

# Values that fit some parameter: whatever they are put in, they must render cleanly.
PLAUSIBLE = [0, 1, 2, 100, 65535, 0.5, 10.0, True, False, "", "1s", "30s", "500ms", "off", "tcp",
             "1024 65000", "1.3", "tls-notify", "always", "backend", "client-killed",
             "httpclose", "http-server-close", 4,
             {"backend": ["option abortonclose", "retries 3"]},
             {"global": ["nbthread 2"], "defaults": ["timeout queue 5s", "balance first"]},
             {"frontend": ["maxconn 10", "no option dontlognull"]}]  # fmt: skip

values = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-5, max_value=70_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=700),
    st.booleans(),
    st.none(),
    st.sampled_from(HOSTILE_TEXT),
    st.text(max_size=12),
    st.builds(
        lambda n, u: f"{n}{u}", st.integers(0, 10**10), st.sampled_from(["", "ms", "s", "h", "x"])
    ),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip


@st.composite
def matrices(draw: st.DrawFn) -> dict[str, Any]:
    entries = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from([*SCENARIOS, "smokey"]))
        fields = SCENARIOS[name].params.model_fields if name in SCENARIOS else {}
        keys = list(fields) or ["size"]
        key = st.one_of(st.sampled_from(keys), st.text(max_size=6))
        hostile = draw(st.booleans())
        params = draw(st.dictionaries(key, values, max_size=4)) if hostile else {}
        # Values of the declared kind too, so that half the matrices get to be rendered.
        for k in draw(st.lists(st.sampled_from(keys), max_size=3)):
            plausible = [f.default, *(f.examples or [])] if (f := fields.get(k)) else [1]
            params[k] = draw(st.sampled_from([*plausible, *PLAUSIBLE]))
        grid = (
            draw(st.dictionaries(key, st.lists(values, min_size=1, max_size=2), max_size=1))
            if hostile
            else {}
        )
        entries.append({"name": name, "params": params, "grid": grid})
    return {"name": "fuzz", "versions": ["debian:bookworm"], "scenarios": entries}


_SUPPORT = {
    name: f"harness-{name}:latest" for name in ("backend", "client", "client-native", "observer")
}


def _render(cell: spec.Cell) -> tuple[str, dict[str, Any]]:
    knobs = cell.knobs  # the scenario's knobs with the cell's config lines
    project = render.project_name(cell)
    net = render.Network.for_project(project)
    hx = HaproxyImage(cell.version, "harness-haproxy:x", "sha256:x", "x", "")
    images = ImageSet({cell.version.text: hx}, _SUPPORT)
    cfg = render.haproxy_cfg(cell, knobs, net)
    text = render.compose_yaml(cell, knobs, net, images, hx, project, ["locust"])
    return cfg, yaml.safe_load(text)


def _check_structure(cfg: str, doc: dict[str, Any]) -> None:
    for line in cfg.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            assert CFG_DIRECTIVES.match(stripped), (
                f"haproxy.cfg line the template never wrote: {line!r}"
            )
    assert set(doc) <= compose_file.TOP_KEYS, set(doc)
    assert set(doc["services"]) <= SERVICES, set(doc["services"])
    for name, service in doc["services"].items():
        assert set(service) <= compose_file.SERVICE_KEYS, (name, set(service))
        assert all(ENV_KEY.fullmatch(k) for k in service.get("environment", {})), service
        assert set(service.get("sysctls", {})) <= SYSCTLS, service
        assert all(isinstance(v, str) for v in service.get("environment", {}).values())
        assert "privileged" not in service and "pid" not in service
    assert set(doc["networks"]) == {"lab"}


@settings(
    max_examples=int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(matrices())
def test_generated_matrix_is_refused_or_renders_only_the_harness_structure(
    raw: dict[str, Any],
) -> None:
    try:
        plan = spec.expand(raw, "fuzz", Path("fuzz.yaml"), "")
    except SpecError as exc:
        assert "Traceback" not in str(exc)
        return
    for cell in plan.cells[:6]:
        _check_structure(*_render(cell))


def test_the_structure_check_catches_an_injected_key() -> None:
    # The property can fail: a service key or a config line the harness never writes.
    raw = {"name": "t", "versions": ["debian:bookworm"], "scenarios": [{"name": "smoke"}]}
    cfg, doc = _render(spec.expand(raw, "t").cells[0])
    _check_structure(cfg, doc)
    doc["services"]["client"]["privileged"] = True
    with pytest.raises(AssertionError):
        _check_structure(cfg, doc)
    doc["services"]["client"].pop("privileged")
    with pytest.raises(AssertionError):
        _check_structure(cfg + "    stats socket ipv4@0.0.0.0:9998 level admin\n", doc)


def test_every_allow_listed_directive_and_mode_tcp_pass_the_structure_check() -> None:
    # The property's allowed lines cover what the allow-list can write, and only that:
    # each directive once, with an argument of its kind, in every section it may go in.
    from harness.plan.params import CONFIG_DIRECTIVES

    def argument(kind: Any) -> str:
        return "1s" if kind == ("time",) else str(kind[1]) if kind[0] == "count" else kind[0]

    config: dict[str, list[str]] = {"global": [], "defaults": [], "frontend": [], "backend": []}
    for keyword, (sections, kinds) in CONFIG_DIRECTIVES.items():
        line = " ".join([keyword, *map(argument, kinds)])
        for section in sections:
            config[section].append(line)
    for section, lines in config.items():
        for start in range(0, len(lines), 32):  # at most 32 lines per section and entry
            params = {"mode": "tcp", "client_fin": "1s", "server_fin": "1s", "tunnel": "1s",
                      "config": {section: lines[start:start + 32]}}  # fmt: skip
            raw = {"name": "t", "versions": ["debian:bookworm"],
                   "scenarios": [{"name": "backend-closes-first", "params": params}]}  # fmt: skip
            cfg, doc = _render(spec.expand(raw, "t").cells[0])
            _check_structure(cfg, doc)
            assert all(f"    {line}\n" in cfg for line in lines[start : start + 32])


def test_scenarios_verb_lists_every_parameter_with_its_allowed_form() -> None:
    import subprocess
    import sys

    from harness import ROOT

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness", "scenarios", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    every = cli()
    assert every.returncode == 0 and all(name in every.stdout for name in SCENARIOS)
    one = cli("kernel-knobs")
    assert "port_range (default ''): '' (the kernel's default) or two ports" in one.stdout
    assert "nolinger (default false): true or false" in one.stdout
    assert "tw_reuse (default 2): one of 0, 1, 2" in one.stdout
    # what the scenario reports, and what versions are compared on
    assert "reports: version, rps, latency-p50" in one.stdout
    assert "versions compared on: latency (Mann-Whitney U on every sample)" in one.stdout
    unknown = cli("smokey")
    assert unknown.returncode == 2 and "unknown scenario 'smokey'" in unknown.stderr
