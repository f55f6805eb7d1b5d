"""The ports of a cell's services: one definition for the plan, the stack (compose file,
haproxy.cfg, capture filter, health check, Locust) and the analysis (which packets are
the frontend's). The backend's own default (backends/server.py) and the probe's
(clients/locustfiles/probe.py) run in images and say the same."""

HTTP_PORT = 8080  # HAProxy's plain frontend, and the backend's port
HTTPS_PORT = 8443  # HAProxy's TLS frontend
STATS_PORT = 9999  # HAProxy's stats socket: TCP on 127.0.0.1 inside its container only
FRONTEND_PORTS = frozenset({HTTP_PORT, HTTPS_PORT})


def frontend_port(tls: str) -> int:
    """The frontend a client reaches: ``tls`` is "off", "1.2" or "1.3"."""
    return HTTP_PORT if tls == "off" else HTTPS_PORT


# The backend's listeners when a cell's backend has several servers: server i (from 1)
# listens on SERVER_PORTS[i - 1]. 8081 and 8082 are connect-timeout's refused and
# blackholed ports, so the others start at 8083.
SERVER_PORTS = (HTTP_PORT, 8083, 8084, 8085)
MAX_SERVERS = len(SERVER_PORTS)


def server_name(index: int) -> str:
    """The name of server ``index`` (from 1) in haproxy.cfg and its log: "app" for the
    first (as a one-server backend has always called it), then "app2", "app3", ..."""
    return "app" if index == 1 else f"app{index}"
