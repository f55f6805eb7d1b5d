import re

import pytest
import yaml

from harness.plan import spec
from harness.plan.log_format import HTTP_LOG_FORMAT, TCP_LOG_FORMAT
from harness.plan.scenarios import SCENARIOS
from harness.stack import render
from harness.stack.images import HaproxyImage, ImageSet


def _cell():
    return spec.single("debian:bookworm", "smoke", "20260101T000000Z-t").cells[0]


def _images(cell):
    hx = HaproxyImage(
        cell.version, "harness-haproxy:2.6.12-debian-bookworm", "sha256:x", "2.6.12", ""
    )
    support = {n: f"harness-{n}:latest" for n in ("backend", "client", "client-native", "observer")}
    return ImageSet({cell.version.text: hx}, support), hx


def test_network_is_fixed_per_project_and_inside_the_pool():
    a = render.Network.for_project("harness-x-001")
    assert a == render.Network.for_project("harness-x-001")
    assert a.subnet.startswith("172.30.") and a.subnet.endswith(".0/24")
    prefix = a.subnet.rsplit(".", 1)[0]
    assert (a.haproxy, a.backend, a.client) == (f"{prefix}.10", f"{prefix}.20", f"{prefix}.30")


def test_project_name_is_compose_safe():
    name = render.project_name(_cell())
    assert name == "harness-20260101t000000z-t-001"


def test_haproxy_cfg_carries_log_format_backend_and_knobs():
    cell = _cell()
    net = render.Network.for_project("p")
    knobs = SCENARIOS["smoke"].knobs({**cell.params, "http_reuse": "never"})
    cfg = render.haproxy_cfg(cell, knobs, net)
    assert f'log-format "{HTTP_LOG_FORMAT}"' in cfg
    assert f"server app {net.backend}:8080" in cfg
    assert "http-reuse never" in cfg
    assert "http-after-response set-header X-Unique-ID %[unique-id]" in cfg
    assert cell.id in cfg


@pytest.mark.parametrize("scenario", ["half-close", "keepalive-vs-close", "backend-closes-first"])
def test_mode_tcp_renders_l4_sections_with_the_tcp_log_format(scenario):
    cell = spec.single(
        "debian:bookworm", scenario, "20260101T000000Z-t", params={"mode": "tcp"}
    ).cells[0]
    cfg = render.haproxy_cfg(cell, cell.knobs, render.Network.for_project("p"))
    lines = [line.strip() for line in cfg.splitlines()]
    assert "mode tcp" in lines and "mode http" not in lines
    assert f'log-format "{TCP_LOG_FORMAT}"' in lines
    # HTTP-only directives would be refused or ignored (with a warning) in mode tcp.
    assert not [line for line in lines if line.startswith(("http-", "unique-id-format"))]
    http = spec.single("debian:bookworm", scenario, "20260101T000000Z-t").cells[0]
    assert "mode http" in render.haproxy_cfg(http, http.knobs, render.Network.for_project("p"))


def test_fin_timeouts_render_in_their_sections_and_off_leaves_them_out():
    params = {"mode": "tcp", "client_fin": "1s", "server_fin": "250ms", "tunnel": "2m"}
    cell = spec.single(
        "debian:bookworm", "backend-closes-first", "20260101T000000Z-t", params=params
    ).cells[0]
    cfg = render.haproxy_cfg(cell, cell.knobs, render.Network.for_project("p"))
    frontend, backend = cfg.split("\nfrontend fe_http")[1].split("\nbackend be_app")
    assert "timeout client-fin 1s" in frontend
    assert "timeout server-fin 250ms" in backend and "timeout tunnel 2m" in backend
    off = spec.single("debian:bookworm", "backend-closes-first", "20260101T000000Z-t").cells[0]
    assert "-fin" not in render.haproxy_cfg(off, off.knobs, render.Network.for_project("p"))


def test_config_lines_land_in_their_sections_after_the_scenarios_own():
    config = {
        "global": ["nbthread 2"],
        "defaults": ["timeout queue 5s", "no option dontlognull"],
        "frontend": ["timeout http-request 2s"],
        "backend": ["option abortonclose", "retries 3"],
    }
    cell = spec.single(
        "debian:bookworm", "connect-timeout", "20260101T000000Z-t", params={"config": config}
    ).cells[0]
    assert cell.params["config"] == config  # recorded as given: the report shows it
    cfg = render.haproxy_cfg(cell, cell.knobs, render.Network.for_project("p"))
    head, rest = cfg.split("\ndefaults\n")
    defaults, rest = rest.split("\nfrontend fe_http\n")
    frontend, backend = rest.split("\nbackend be_app\n")
    assert "    nbthread 2\n" in head
    # after the scenario's own "retries 1": HAProxy takes the last one
    assert defaults.index("retries 1") < defaults.index("timeout queue 5s")
    assert "    no option dontlognull\n" in defaults
    assert "    timeout http-request 2s\n" in frontend
    assert (
        backend.index("option abortonclose")
        < backend.index("retries 3")
        < backend.index("server app")
    )
    # Without config lines, the parameters are what they were before the feature.
    plain = spec.single("debian:bookworm", "connect-timeout", "20260101T000000Z-t").cells[0]
    assert "config" not in plain.params


def test_compose_yaml_is_valid_and_labelled():
    cell = _cell()
    project = render.project_name(cell)
    net = render.Network.for_project(project)
    image_set, hx = _images(cell)
    knobs = SCENARIOS["smoke"].knobs(cell.params)
    text = render.compose_yaml(cell, knobs, net, image_set, hx, project, ["-f", "x.py"])
    doc = yaml.safe_load(text)
    assert doc["name"] == project
    assert doc["networks"]["lab"]["ipam"]["config"][0]["subnet"] == net.subnet
    assert doc["networks"]["lab"]["labels"]["harness.cell"] == cell.id
    assert doc["services"]["haproxy"]["image"] == hx.tag
    assert doc["services"]["haproxy"]["networks"]["lab"]["ipv4_address"] == net.haproxy
    assert doc["services"]["client"]["entrypoint"] == ["sleep", "infinity"]
    assert doc["services"]["client"]["environment"]["LOAD_KEEPALIVE"] == "on"
    # observers share the namespaces they watch; the capture has only the caps it needs
    assert doc["services"]["census-haproxy"]["network_mode"] == "service:haproxy"
    assert doc["services"]["census-client"]["network_mode"] == "service:client"
    assert doc["services"]["capture"]["cap_drop"] == ["ALL"]
    assert doc["services"]["capture"]["cap_add"] == ["NET_RAW", "NET_ADMIN"]
    # only the frontend's connections: haproxy's own to the backend's :8080 stay out
    capture_filter = doc["services"]["capture"]["command"][-1]
    assert f"dst host {net.haproxy} and (dst port 8080" in capture_filter
    assert "calibration" not in doc["services"]
    assert doc["services"]["backend"]["environment"]["BACKEND_SIZE"] == "128"
    for service in doc["services"].values():
        assert service["labels"]["harness"] == "1"


def _compose(scenario: str) -> dict:
    cell = spec.single("debian:bookworm", scenario, "20260101T000000Z-t").cells[0]
    project = render.project_name(cell)
    image_set, hx = _images(cell)
    knobs = SCENARIOS[scenario].knobs(cell.params)
    net = render.Network.for_project(project)
    return yaml.safe_load(render.compose_yaml(cell, knobs, net, image_set, hx, project, []))


def test_haproxys_health_check_stays_off_the_frontend():
    # A bare connect every second to :8080 took an accept-queue slot from the clients
    # when HAProxy was at its maxconn (8 established instead of 9); the stats socket's
    # listener is HAProxy's too, and no client's.
    [check] = _compose("maxconn")["services"]["haproxy"]["healthcheck"]["test"][3:]
    assert check == "exec 3<>/dev/tcp/127.0.0.1/9999", check
    assert "8080" not in check and "8443" not in check


def test_census_gives_way_to_the_probe_only_where_a_probe_times_closes():
    def idle(doc: dict) -> set[str]:
        return {
            name
            for name, service in doc["services"].items()
            if name.startswith("census-") and service["environment"].get("CENSUS_SCHED_IDLE")
        }

    probe = _compose("calibration")
    assert idle(probe) == {"census-client", "census-calibration", "census-backend"}
    assert (
        probe["services"]["client"]["cpu_shares"] == probe["services"]["calibration"]["cpu_shares"]
    )
    assert idle(_compose("smoke")) == set()  # under load an idle-class census would starve


def test_the_ports_are_defined_once_and_every_rendered_file_uses_them(monkeypatch):
    from harness.plan import ports

    # Move every port: a place that still spells 8080/8443/9999 itself would disagree.
    for name, value in (("HTTP_PORT", 18080), ("HTTPS_PORT", 18443), ("STATS_PORT", 19999)):
        monkeypatch.setattr(ports, name, value)
    cell = spec.single("debian:bookworm", "half-close", "20260101T000000Z-t",
                       params={"tls": "1.3", "variant": "tls-fin-no-notify"}).cells[0]  # fmt: skip
    net = render.Network.for_project("p")
    cfg = render.haproxy_cfg(cell, cell.knobs, net)
    assert "bind :18080\n" in cfg and "bind :18443 ssl" in cfg
    assert "stats socket ipv4@127.0.0.1:19999 " in cfg
    # (the backend server line keeps the port its knobs were built with at import)
    assert not any(old in cfg for old in ("bind :8080", ":8443", ":9999"))


def test_a_cells_knobs_are_built_once():
    cell = _cell()
    assert cell.knobs is cell.knobs


def test_servers_render_one_line_per_server_and_the_backend_listens_for_those_up():
    cell = spec.single(
        "debian:bookworm", "servers", "20260101T000000Z-t",
        params={"servers": 4, "servers_down": 2, "redispatch": True, "retries": 2},
    ).cells[0]  # fmt: skip
    net = render.Network.for_project("p")
    cfg = render.haproxy_cfg(cell, cell.knobs, net)
    backend = cfg.split("\nbackend be_app\n")[1].splitlines()
    servers = [line.split()[1:3] for line in backend if line.strip().startswith("server ")]
    assert servers == [
        ["app", f"{net.backend}:8080"], ["app2", f"{net.backend}:8083"],
        ["app3", f"{net.backend}:8084"], ["app4", f"{net.backend}:8085"],
    ]  # fmt: skip
    assert "    retries 2" in backend and "    option redispatch" in backend
    # Servers 3 and 4 are down: nothing listens on their ports.
    assert cell.knobs.backend_env["BACKEND_EXTRA_PORTS"] == "8083"
    images, hx = _images(cell)
    compose = yaml.safe_load(render.compose_yaml(cell, cell.knobs, net, images, hx, "p", []))
    census = compose["services"]["census-backend"]["environment"]["CENSUS_LISTEN_PORTS"]
    assert census == "8080 8083 8084 8085"


@pytest.mark.parametrize("scenario", ["smoke", "server-pool", "connect-timeout", "kernel-knobs",
                                      "fault", "keepalive-vs-close", "servers"])  # fmt: skip
def test_connection_mode_renders_its_option_in_every_http_load_scenario(scenario):
    net = render.Network.for_project("p")
    for mode, line in (("http-server-close", "option http-server-close"),
                       ("httpclose", "option httpclose"), ("keep-alive", None)):  # fmt: skip
        params = {} if mode == "keep-alive" else {"connection_mode": mode}
        cell = spec.single("debian:bookworm", scenario, "20260101T000000Z-t", params=params)
        cfg = render.haproxy_cfg(cell.cells[0], cell.cells[0].knobs, net)
        defaults = cfg.split("\ndefaults\n")[1].split("\nfrontend ")[0].splitlines()
        options = [x.strip() for x in defaults if x.strip() in
                   ("option http-server-close", "option httpclose")]  # fmt: skip
        assert options == ([line] if line else []), (scenario, mode, cfg)
        # At its default the parameter is not recorded: the cell is what it was before.
        assert ("connection_mode" in cell.cells[0].params) == (line is not None)


def test_connection_mode_is_refused_in_mode_tcp():
    with pytest.raises(spec.SpecError, match="connection_mode 'httpclose' is an HTTP option"):
        spec.single("debian:bookworm", "keepalive-vs-close", "20260101T000000Z-t",
                    params={"mode": "tcp", "connection_mode": "httpclose"})  # fmt: skip


def test_servers_down_must_leave_one_up():
    with pytest.raises(spec.SpecError, match=r"servers_down \(2\) must leave at least one"):
        spec.single("debian:bookworm", "servers", "20260101T000000Z-t",
                    params={"servers": 2, "servers_down": 2})  # fmt: skip


def test_maxconn_renders_each_limit_in_its_section_and_leaves_unset_ones_out():
    net = render.Network.for_project("p")
    cell = spec.single(
        "debian:bookworm", "maxconn", "20260101T000000Z-t",
        params={"global_maxconn": 50, "frontend_maxconn": 7, "server_maxconn": 3,
                "timeout_queue": "150ms"},
    ).cells[0]  # fmt: skip
    cfg = render.haproxy_cfg(cell, cell.knobs, net)
    sections = {
        name: body.splitlines()
        for name, body in zip(
            ("global", "defaults", "frontend", "backend"),
            re.split(
                r"\n(?:defaults|frontend fe_http|backend be_app)\n", cfg.split("\nglobal\n")[1]
            ),
            strict=True,
        )
    }
    assert "    maxconn 50" in sections["global"]
    assert "    timeout queue 150ms" in sections["defaults"]
    assert "    maxconn 7" in sections["frontend"]
    assert f"    server app {net.backend}:8080 maxconn 3" in sections["backend"]
    plain = spec.single("debian:bookworm", "maxconn", "20260101T000000Z-t").cells[0]
    cfg = render.haproxy_cfg(plain, plain.knobs, net)
    lines = [line.strip() for line in cfg.splitlines() if not line.startswith("#")]
    assert [line for line in lines if "maxconn" in line] == ["maxconn 4096"]  # global


def test_maxconn_starts_its_users_one_at_a_time_and_other_loads_at_once():
    # A burst of SYNs met an accept queue HAProxy had not drained yet: on a busy host the
    # census saw 8 established and 6-7 in SYN-SENT, not backlog + 1 and the rest.
    net = render.Network.for_project("p")
    cell = spec.single("debian:bookworm", "maxconn", "20260101T000000Z-t").cells[0]
    assert render._load_env(cell, cell.knobs, net)["LOAD_START_STAGGER_MS"] == "50"
    smoke = spec.single("debian:bookworm", "smoke", "20260101T000000Z-t").cells[0]
    assert render._load_env(smoke, smoke.knobs, net)["LOAD_START_STAGGER_MS"] == "0"


def test_a_request_body_reaches_locusts_environment_and_wrk_is_refused():
    cell = spec.single(
        "debian:bookworm", "smoke", "20260101T000000Z-t",
        params={"body_bytes": 5000, "chunked_upload": True},
    ).cells[0]  # fmt: skip
    env = render._load_env(cell, cell.knobs, render.Network.for_project("p"))
    assert (env["LOAD_BODY_BYTES"], env["LOAD_CHUNKED"]) == ("5000", "on")
    plain = spec.single("debian:bookworm", "smoke", "20260101T000000Z-t").cells[0]
    assert "body_bytes" not in plain.params and "chunked_upload" not in plain.params
    env = render._load_env(plain, plain.knobs, render.Network.for_project("p"))
    assert (env["LOAD_BODY_BYTES"], env["LOAD_CHUNKED"]) == ("0", "off")
    with pytest.raises(spec.SpecError, match="chunked_upload needs a body"):
        spec.single("debian:bookworm", "smoke", "t", params={"chunked_upload": True})
    with pytest.raises(spec.SpecError, match="only generator: locust sends"):
        spec.single("debian:bookworm", "smoke", "t", params={"body_bytes": 10},
                    load=spec.Load(generator="wrk"))  # fmt: skip
