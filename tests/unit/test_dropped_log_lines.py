"""Every count the report takes from HAProxy's log says when HAProxy dropped log lines.

HAProxy drops a log line when two of its threads collide on the log's lock (src/fd.c
fd_write_frag_line gives up after 200 tries) and counts it in ``show info`` DroppedLogs.
The per-server column did not say so: in a full ``make test`` the servers cell logged
1879/1878/1879 requests per server where the backend counted 1882 each (10 lines
dropped), and 8 runs of that cell showed the backend's surplus equal to DroppedLogs
every time (0, 2, 4 and 5 in all).
"""

from typing import Any

from harness.report import tables
from tests import records

# A request's timers and the queue peaks are not counts: a dropped line moves them by
# one sample among thousands, so they carry no mark.
NOT_COUNTS = {"tw-p50", "tc-p50", "ta-p50", "tw-p99", "queue-max"}


def _record(scale: int, dropped: int) -> Any:
    """A cell whose log counts are all ``scale`` times one set, its timers and queue
    peaks unchanged, ``dropped`` lines dropped."""
    log = {
        "total": 30 * scale,
        "termination_states": {"----": 20 * scale, "SC--": 10 * scale},
        "status_codes": {"200": 20 * scale, "502": 10 * scale},
        "status_classes": {"2xx": 20 * scale, "5xx": 10 * scale},
        "retries_total": 4 * scale,
        "redispatches": 2 * scale,
        "servers": {"app": {"2xx": 20 * scale}, "app2": {"5xx": 10 * scale}},
        "timers": {name: {"count": 30, "p50": 1.0, "p99": 2.0} for name in ("Tw", "Tc", "Ta")},
        "peaks": {"srv_queue": 1, "backend_queue": 2},
    }
    return records.make({
        "scenario": "servers", "params": {"fin_delay_ms": 0, "fault": "none", "connections": 0},
        "metrics": {"haproxy": log, "haproxy_counters": {"info": {"DroppedLogs": dropped}}},
    })  # fmt: skip


def test_every_count_column_read_from_the_log_is_marked_when_lines_were_dropped():
    once, twice = _record(1, 0), _record(2, 0)
    dropped = _record(1, 7)
    from_log = []
    for key, (header, read) in tables.CATALOGUE.items():
        if read(once) == read(twice):
            continue  # not read from the log's counts
        from_log.append(key)
        if key in NOT_COUNTS:
            continue
        assert "(+7 log lines dropped)" in str(read(dropped)), (key, header, read(dropped))
        assert "dropped" not in str(read(once)), (key, read(once))
    # the columns this caught when it was written, so a change of the record cannot
    # leave it comparing nothing
    caught = {"per-server", "retries", "redispatches", "502s", "status", "flags"}
    assert caught <= set(from_log), from_log


def test_the_per_server_column_says_the_log_is_short():
    text = tables._per_server(_record(1, 10))
    assert text == "app 2xx×20; app2 5xx×10 (+10 log lines dropped)"
