"""A POST body and the client's FIN right after it (issue 13: CLOSE_WAIT reported after
a chunked POST), through HAProxy 2.6.12 on a real stack: the probe sends 100000 bytes,
with Content-Length and then chunked, and shutdown(SHUT_WR) at once, before reading.
HAProxy forwards the whole body, answers 200 and closes; nothing stays in CLOSE-WAIT.
Two cells of 10 connections."""

import json
import textwrap

BODY = 100000
CONNECTIONS = 10
MATRIX = textwrap.dedent(
    f"""
    name: body-fin
    versions: [debian:bookworm]
    scenarios:
      - name: half-close
        params: {{variant: fin-with-request, body_bytes: {BODY}, connections: {CONNECTIONS},
                  deadline_s: 5}}
        grid: {{chunked_upload: [false, true]}}
    """
)


def test_a_fin_right_after_a_post_body_is_answered_and_closed(harness, tmp_path):
    run_dir, records = harness.matrix_ok(MATRIX, tmp_path)
    cells = {c["params"].get("chunked_upload", False): c for c in records}
    assert set(cells) == {False, True}
    for chunked, record in cells.items():
        m = record["metrics"]
        samples = [
            json.loads(line)
            for line in (run_dir / record["cell"] / "probe.jsonl").read_text().splitlines()
        ]
        # Every connection got its 200 whole, after its FIN, then HAProxy's FIN: within
        # 3 s (seen: at most 0.26 s on a shared 2-core host; a FIN that HAProxy missed
        # would leave the connection open past the 5 s deadline).
        assert [s["statuses"] for s in samples] == [[200]] * CONNECTIONS, samples
        assert m["probe"]["ends"] == {"fin": CONNECTIONS}
        assert m["probe"]["complete"] == CONNECTIONS
        assert 0 < m["probe"]["delay_ms"]["max"] < 3000
        assert m["haproxy"]["termination_states"] == {"----": CONNECTIONS}
        # The backend read each body whole, framed as the client sent it.
        framing = "chunked" if chunked else "content-length"
        assert m["backend"]["requests_by_body"] == {framing: CONNECTIONS}
        assert m["backend"]["request_body_bytes"] == BODY * CONNECTIONS
        # CLOSE-WAIT on HAProxy's client side lasts only until it answers: none is left
        # when the observers stop; none towards the backend, none on the backend.
        haproxy = m["census"]["haproxy"]["states"]
        close_wait_in = haproxy.get("CLOSE-WAIT/in", {"final": 0, "baseline": 0})
        assert close_wait_in["final"] == close_wait_in["baseline"] == 0, close_wait_in
        assert haproxy.get("CLOSE-WAIT/out", {"peak": 0})["peak"] == 0
        backend = m["census"]["backend"]["states"]
        assert backend.get("CLOSE-WAIT/in", {"peak": 0})["peak"] == 0
