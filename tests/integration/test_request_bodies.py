"""Request bodies through HAProxy on a real stack (2.6.12): Locust POSTs a 10000-byte
body with Content-Length, then chunked; the backend reads each whole and counts its
bytes and framing, HAProxy answers every request 200. Two 2-second cells."""

import textwrap

BODY = 10000
MATRIX = textwrap.dedent(
    f"""
    name: bodies
    versions: [debian:bookworm]
    load: {{users: 4, spawn_rate: 4, duration_s: 2}}
    scenarios:
      - name: smoke
        params: {{body_bytes: {BODY}}}
        grid: {{chunked_upload: [false, true]}}
    """
)


def test_post_bodies_reach_the_backend_whole_with_their_framing(harness, tmp_path):
    _, records = harness.matrix_ok(MATRIX, tmp_path)
    cells = {c["params"].get("chunked_upload", False): c for c in records}
    assert set(cells) == {False, True}
    for chunked, record in cells.items():
        m = record["metrics"]
        assert record["params"]["body_bytes"] == BODY
        haproxy, backend = m["haproxy"], m["backend"]
        assert haproxy["total"] > 20 and haproxy["status_classes"]["2xx"] == haproxy["total"]
        assert m["load"]["failures"] == 0
        # HAProxy passes the body on as the client framed it (2.6.12: chunked stays
        # chunked), and the backend read every byte of each.
        framing = "chunked" if chunked else "content-length"
        assert backend["requests_by_body"] == {framing: backend["requests"]}, backend
        assert backend["request_body_bytes"] == BODY * backend["requests"]
        assert backend["requests"] >= haproxy["total"] - 4  # cut off at the end, at most
