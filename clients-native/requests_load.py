"""Python requests as a load generator, in the style of seed 000's test script (a thread
or an eventlet green thread per user, ``requests.request`` per call) and seed 004's fix
(one ``requests.Session``).

    python3 requests_load.py --url URL --users N --duration S [--max-requests N]
                             [--session on|off] [--concurrency threads|eventlet]
                             --out /out/client.json

Each user sends GETs back to back until ``--duration`` seconds have passed or
``--max-requests`` have been sent in all. ``--session off``: ``requests.get`` (a new
Session, hence a new connection and a close, per request); ``on``: one Session per
user, its pooled connection reused. ``--concurrency threads`` (the default) runs each
user in an OS thread (``test_api_thread``); ``eventlet`` in a green thread of a
``GreenPool`` in one OS thread (``test_api_green_thread``), the standard library
monkey-patched (``eventlet.monkey_patch()``) before requests is imported, so its
sockets and locks are eventlet's. Writes the harness's native-client JSON
(harness/analyse/native.py): responses by status, errors by exception name, every
request's latency in whole µs (monotonic clock, send to the whole body read), the new
connections opened and the distinct local ports they used (from urllib3's socket).
"""

import argparse
import collections
import json
import sys
import time

TIMEOUT_S = 10


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--max-requests", type=int, default=0)
    p.add_argument("--session", choices=["on", "off"], default="off")
    p.add_argument("--concurrency", choices=["threads", "eventlet"], default="threads")
    p.add_argument("--out", required=True)
    return p.parse_args()


def main() -> None:
    args = _args()
    if args.concurrency == "eventlet":
        # Before requests (urllib3, socket, threading) is imported: green sockets, and
        # threading.Lock a green lock.
        import eventlet

        eventlet.monkey_patch()
    import threading

    import requests
    import urllib3.connection

    lock = threading.Lock()
    ports: set[int] = set()
    opened = [0]
    new_conn = urllib3.connection.HTTPConnection._new_conn

    def counted_new_conn(self):  # every connection urllib3 opens, and its local port
        sock = new_conn(self)
        with lock:
            opened[0] += 1
            ports.add(sock.getsockname()[1])
        return sock

    urllib3.connection.HTTPConnection._new_conn = counted_new_conn

    deadline = time.monotonic() + args.duration
    left = [args.max_requests or -1]
    status: collections.Counter = collections.Counter()
    errors: collections.Counter = collections.Counter()
    latency: collections.Counter = collections.Counter()

    def ticket() -> bool:
        with lock:
            if left[0] == 0 or time.monotonic() >= deadline:
                return False
            left[0] -= 1
            return True

    def user() -> None:
        mine_status, mine_errors, mine_latency = (collections.Counter() for _ in range(3))
        session = requests.Session() if args.session == "on" else None
        get = session.get if session else requests.get
        while ticket():
            start = time.perf_counter_ns()
            try:
                response = get(args.url, timeout=TIMEOUT_S)
                mine_status[str(response.status_code)] += 1
            except Exception as exc:  # any failure is counted by its kind, as Locust does
                mine_errors[type(exc).__name__] += 1
            mine_latency[(time.perf_counter_ns() - start) // 1000] += 1
        if session:
            session.close()
        with lock:
            status.update(mine_status)
            errors.update(mine_errors)
            latency.update(mine_latency)

    began = time.perf_counter_ns()
    if args.concurrency == "eventlet":
        pool = eventlet.GreenPool(args.users)
        for _ in range(args.users):
            pool.spawn(user)
        pool.waitall()
    else:
        threads = [threading.Thread(target=user) for _ in range(args.users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    result = {
        "generator": "requests",
        "requests": sum(status.values()),
        "duration_us": (time.perf_counter_ns() - began) // 1000,
        "status": dict(status),
        "errors": dict(errors),
        "latency_us": sorted(latency.items()),
        "connections": opened[0],
        "ports": len(ports),
    }
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    sys.exit(main())
