"""HTTP load, closed loop (HttpLoad) or open loop (OpenLoop).

Closed loop: each Locust user sends GETs back to back; a slow response delays the next
request, so a stall shows as fewer requests rather than as latency.
Open loop: one user sends at a fixed arrival rate whatever the responses do, each
request in its own greenlet, and its latency is measured from the *intended* send
time, so coordinated omission cannot hide a stall. Those samples are recorded under
the name "intended"; Locust's own per-send timing stays beside them as "GET".

Knobs (environment, set per cell by the harness):
  LOAD_PATH        request path and query, e.g. "/?size=4096"        [/]
  LOAD_KEEPALIVE   "on" reuses connections, "off" sends Connection: close  [on]
  LOAD_WAIT_MS     closed loop: pause between a user's requests       [0]
  LOAD_START_STAGGER_MS  closed loop: the n-th user of this process starts
                   n times this after the first (Locust starts a spawn step's
                   users at once: their first connections are one burst) [0]
  LOAD_RATE        open loop: requests per second                     [100]
  LOAD_MAX_CONNECTIONS  open loop: connection pool size               [100]
  LOAD_MODE        "open" or "closed": which requests' latency is recorded [closed]
  LOAD_BODY_BYTES  >0: each request is a POST with a body of this many bytes [0]
  LOAD_CHUNKED     "on": that body goes chunked (Transfer-Encoding: chunked),
                   "off": with Content-Length                         [off]

Latency at microsecond resolution: every request's latency, in whole microseconds, goes
into an HdrHistogram (1 us .. 1 h, 3 significant digits), written to /out/latency.hdr in
HdrHistogram's standard compressed base64 encoding. Locust's own histogram rounds to
whole milliseconds, so every sub-millisecond request would read 0 or 1 ms. What is
recorded is exactly what Locust's stats count, so the two counts agree:
- closed loop: the response_time of Locust's request event ("GET"), which FastHttpUser
  measures with time.perf_counter around the request and passes unrounded (the
  rounding happens only inside Locust's stats). Taking it from the event, rather than
  timing the request again, keeps one definition of a request's time and one count.
- open loop: only the "intended" events, the latency from the intended send time.
- failed requests count, with the time until they failed, as in Locust's stats.

Besides Locust's own stats, it writes the status codes it saw to
/out/client_status.json, and every failed request (status, the X-Unique-ID HAProxy
sent back) to /out/client_failures.jsonl, so a failure the client saw can be matched
to HAProxy's log line, and its termination flags, for that very request. When it quits
it writes locust_failures.csv again from its final stats (Locust's is its last timed
write, up to a second old).

Distributed (``load.workers``: a master and N worker processes, clients/distributed.sh):
the users and their request events live in the workers, so each worker writes its own
files, named ``<name>.w<pid>.<ext>`` (latency.w812.hdr, ...), and the master none; the
host adds them up (harness/analyse/latency.py, cell_metrics.py). The master's stats
(locust.json, locust_stats.csv) can miss the workers' last reports: a worker reports
every 3 s (WORKER_REPORT_INTERVAL) and once more when told to quit, after its users have
stopped, but the master waits a fixed 0.5 s for that last one (MasterRunner.quit, Locust
2.47) and a worker with 1,000 users takes longer to stop. So each worker also keeps the
sum of every report it sends the master, merged by Locust's own code for the master
(stats.setup_distributed_stats_event_listeners), and writes it when it quits, after the
last report: locust.w<pid>.json (Locust's --json-file format) and
locust_failures.w<pid>.csv (its failures CSV columns). Those are the cell's counts.
"""

import csv
import io
import itertools
import json
import os
import time
from collections import Counter

import gevent
import geventhttpclient.client
from hdrh.histogram import HdrHistogram
from locust import FastHttpUser, constant, events, task
from locust.event import Events
from locust.exception import CatchResponseError
from locust.stats import RequestStats, StatsError, setup_distributed_stats_event_listeners

# One call of _get is one HTTP request on the wire, counted once with its own latency.
# geventhttpclient's HTTPClient.request (2.6.1: client.py lines 430 and 544-551) sends an
# idempotent request again, on a new connection, when the connection closes before any
# response, up to the pool's size + 1 times, inside the one call Locust times. HAProxy
# does close that way on purpose: a connect timeout on a keep-alive connection's second
# or later request gets no 503 ("so the client can retry": http_return_srv_error,
# src/http_ana.c), so behind connect-timeout one Locust request was two of HAProxy's,
# timed as both. The retry's only gate is this module-level predicate; refuse it, so the
# closed connection is a failure of its own ("status 0 HTTPConnectionClosed"), as on the
# wire. clients/requirements.txt pins the version this was read from; a version without
# the predicate stops here rather than retry unseen.
if not callable(getattr(geventhttpclient.client, "_may_retry_after_send_error", None)):
    raise RuntimeError(
        "geventhttpclient.client._may_retry_after_send_error is gone: its request retry "
        "cannot be turned off; pin geventhttpclient as clients/requirements.txt does"
    )
geventhttpclient.client._may_retry_after_send_error = lambda method: False

PATH = os.environ.get("LOAD_PATH", "/")
KEEPALIVE = os.environ.get("LOAD_KEEPALIVE", "on") == "on"
WAIT_S = float(os.environ.get("LOAD_WAIT_MS", "0")) / 1000
START_STAGGER_S = float(os.environ.get("LOAD_START_STAGGER_MS", "0")) / 1000
STARTED = itertools.count()  # HttpLoad users started in this process, for the stagger
RATE = float(os.environ.get("LOAD_RATE", "100"))
BODY_BYTES = int(os.environ.get("LOAD_BODY_BYTES", "0"))
CHUNKED = os.environ.get("LOAD_CHUNKED", "off") == "on"
HEADERS = {} if KEEPALIVE else {"Connection": "close"}
if BODY_BYTES and CHUNKED:
    # geventhttpclient sends a body chunked when the request says so (its user agent
    # takes no iterable body): the whole body in one chunk.
    HEADERS["Transfer-Encoding"] = "chunked"
BODY = b"x" * BODY_BYTES if BODY_BYTES else None
STATUS: Counter[str] = Counter()
FAILURES: list[dict] = []
# harness/analyse/latency.py reads this shape back (LOWEST_US, HIGHEST_US, digits).
HIGHEST_US = 3_600_000_000
LATENCY = HdrHistogram(1, HIGHEST_US, 3)
# Which request events are the latency: "GET" (closed loop) or "intended" (open loop).
# From the harness's LOAD_MODE, not from the user classes: a distributed worker is
# started without the class filter the master got, so it knows both classes.
RECORDED = {"name": "intended" if os.environ.get("LOAD_MODE") == "open" else "GET"}
# This process's part in the files: "" alone, ".w<pid>" as a worker, None as a master.
PART: dict[str, str | None] = {"suffix": ""}
# A worker's reports to the master, added up as the master adds them: Locust's own
# listeners for the master's side, on events of their own (fired by _keep_report).
SENT = RequestStats()
SENT_EVENTS = Events()
setup_distributed_stats_event_listeners(SENT_EVENTS, SENT)


def _get(user: FastHttpUser) -> str | None:
    """One request, recorded as "GET"; returns its failure's text (None: a 200), which
    the open loop gives its "intended" event too (those are its counts)."""
    # Named "GET" whatever the method: the latency hook and the analysis key on it.
    method = "GET" if BODY is None else "POST"
    with user.client.request(
        method, PATH, data=BODY, headers=HEADERS, catch_response=True, name="GET"
    ) as resp:
        STATUS[str(resp.status_code)] += 1
        if resp.status_code != 200:
            uid = resp.headers.get("X-Unique-ID") if resp.headers else None
            FAILURES.append({"status": resp.status_code, "unique_id": uid})
            # status 0: no response at all; name the error (reset, refused, ...)
            error = f" {type(resp.error).__name__}" if resp.error and not resp.status_code else ""
            text = f"status {resp.status_code}{error}"
            resp.failure(text)
            return text
    return None


class HttpLoad(FastHttpUser):
    wait_time = constant(WAIT_S)
    max_retries = 0  # Locust's default, said here: the user agent never sends a request again

    def on_start(self) -> None:
        gevent.sleep(next(STARTED) * START_STAGGER_S)

    @task
    def get(self) -> None:
        _get(self)


class OpenLoop(FastHttpUser):
    # The pool bounds how many requests are in flight; a request waiting for a
    # connection is late, and its latency (from the intended time) says so.
    concurrency = int(os.environ.get("LOAD_MAX_CONNECTIONS", "100"))
    wait_time = constant(0)
    max_retries = 0

    @task
    def schedule(self) -> None:
        start = time.monotonic()
        for i in range(10**9):
            due = start + i / RATE
            gevent.sleep(max(0.0, due - time.monotonic()))
            gevent.spawn(self._one, due)

    def _one(self, due: float) -> None:
        # A failed response fails its "intended" event too, with the same text: the open
        # loop's counts are those events (a 503 counted as a success until it did).
        failure: Exception | None = None
        try:
            text = _get(self)
            failure = CatchResponseError(text) if text else None
        except Exception as exc:  # recorded as a failure: the schedule goes on
            failure = exc
        self.environment.events.request.fire(
            request_type="GET",
            name="intended",
            response_time=(time.monotonic() - due) * 1000,
            response_length=0,
            exception=failure,
            context={},
        )


@events.request.add_listener
def _record_latency(name: str, response_time: float, **_kwargs) -> None:
    if name == RECORDED["name"]:
        # whole microseconds; a value past the range is clamped so the count still agrees
        LATENCY.record_value(min(max(round(response_time * 1000), 0), HIGHEST_US))


def _write(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as out:
        out.write(text)
    os.replace(path + ".tmp", path)  # a reader, or a kill, never sees half a file


@events.init.add_listener
def _role(environment, **_kwargs) -> None:
    options = environment.parsed_options
    if options is not None and getattr(options, "master", False):
        PART["suffix"] = None  # no users here: the workers write
    elif options is not None and getattr(options, "worker", False):
        PART["suffix"] = f".w{os.getpid()}"
        # Added at init, after the runner's own report_to_master listener (which fills
        # the report from the worker's stats and resets them): this one sees it filled.
        environment.events.report_to_master.add_listener(_keep_report)
        environment.events.quitting.add_listener(_write_sent)


def _keep_report(client_id: str, data: dict, **_kwargs) -> None:
    # the master's merge (stats.on_worker_report), applied to this worker's own sum
    SENT_EVENTS.worker_report.fire(client_id=client_id, data=data)


@events.test_start.add_listener
def _clear_sent(**_kwargs) -> None:
    SENT.clear_all()  # as the worker clears its stats when a test starts


def _write_failures(stats, part: str) -> None:
    # Locust's failures CSV columns, from these stats as they are now
    rows = [["Method", "Name", "Error", "Occurrences"]] + [
        [e.method, e.name, StatsError.parse_error(e.error), e.occurrences]
        for e in stats.errors.values()
    ]
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    _write(f"/out/locust_failures{part}.csv", text.getvalue())


def _write_sent(environment=None, **_kwargs) -> None:
    # On quitting, after the worker's last report (sent when its users had stopped);
    # only then: a worker killed mid-load leaves none, and the host falls back.
    part = PART["suffix"]
    _write(f"/out/locust{part}.json", json.dumps(SENT.serialize_stats(), indent=1))
    _write_failures(SENT, part)


@events.quitting.add_listener
def _write_status(environment=None, **_kwargs) -> None:
    part = PART["suffix"]
    if part is None:
        return
    _write(f"/out/client_status{part}.json", json.dumps(dict(STATUS), indent=1, sort_keys=True))
    _write(f"/out/client_failures{part}.jsonl", "".join(json.dumps(f) + "\n" for f in FAILURES))
    _write(f"/out/latency{part}.hdr", LATENCY.encode().decode("ascii") + "\n")
    if part == "" and environment is not None:
        # Locust's own failures CSV is its last timed write, up to a second old (an
        # open loop's last 25 of 68 failures were missing); the final one replaces it
        # (Locust's writer keeps its handle on the replaced file). A killed client
        # never quits: its timed write stays.
        _write_failures(environment.stats, part)


@events.test_start.add_listener
def _write_status_every_second(environment, **_kwargs) -> None:
    # A client killed mid-load (the fault scenario) never quits: what it saw up to the
    # last second is on disk anyway.
    def loop() -> None:
        while True:
            gevent.sleep(1)
            _write_status()

    gevent.spawn(loop)
