"""The fate of each client connection after an error response, on HAProxy 2.6.12 and a
real stack: the probe sends one keep-alive GET per connection, never closes first, and
waits 2 s for HAProxy's FIN; each connection is joined to its log line by client port.
Three cells of 10 connections: the server's queue times out (one 200, nine 503 sQ--)
in the default keep-alive mode and with option httpclose, and timeout server (504 sH--).
"""

import textwrap

MATRIX = textwrap.dedent(
    """
    name: error-fate
    versions: [debian:bookworm]
    scenarios:
      - name: error-fate
        grid: {error: [queue, server-timeout]}
      - name: error-fate
        params: {error: queue, config: {defaults: [option httpclose]}}
    """
)


def _fates(record):
    return {(f["status"], f["state"]): f for f in record["metrics"]["probe"]["fates"]}


def test_error_responses_keep_the_client_connection_unless_told_to_close(harness, tmp_path):
    _, records = harness.matrix_ok(MATRIX, tmp_path)
    cells = {(c["params"]["error"], "config" in c["params"]): c for c in records}
    assert set(cells) == {("queue", False), ("server-timeout", False), ("queue", True)}

    # Keep-alive (HAProxy's default): the 503 of a queue timeout and the 504 of a server
    # timeout leave the client connection open for a next request, like the 200.
    queue = _fates(cells[("queue", False)])
    assert set(queue) == {(200, "----"), (503, "sQ--")}, queue
    assert queue[(503, "sQ--")]["connections"] == 9 and queue[(200, "----")]["connections"] == 1
    assert all(f["kept"] == f["connections"] and f["closed"] == 0 for f in queue.values())
    timeout = _fates(cells[("server-timeout", False)])
    assert list(timeout) == [(504, "sH--")]
    assert timeout[(504, "sH--")]["kept"] == 10

    # option httpclose: HAProxy closes after every response, its own 503s included, at
    # once (seen: p50 under 5 ms; the bound leaves a busy host room).
    closing = _fates(cells[("queue", True)])
    assert set(closing) == {(200, "----"), (503, "sQ--")}, closing
    for fate in closing.values():
        assert fate["closed"] == fate["connections"] and fate["kept"] == 0, fate
        assert fate["reset"] == 0
        assert 0 <= fate["delay_p50_ms"] < 200, fate
