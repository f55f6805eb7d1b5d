"""Closed-loop HTTP load: each Locust user sends GETs back to back.

Knobs (environment, set per cell by the harness):
  LOAD_PATH        request path and query, e.g. "/?size=4096"        [/]
  LOAD_KEEPALIVE   "on" reuses connections, "off" sends Connection: close  [on]
  LOAD_WAIT_MS     pause between a user's requests                    [0]

Besides Locust's own stats, it writes the status codes it saw to
/out/client_status.json, and every failed request (status, the X-Unique-ID HAProxy
sent back) to /out/client_failures.jsonl, so a failure the client saw can be matched
to HAProxy's log line, and its termination flags, for that very request.
"""

import json
import os
from collections import Counter

from locust import FastHttpUser, constant, events, task

PATH = os.environ.get("LOAD_PATH", "/")
KEEPALIVE = os.environ.get("LOAD_KEEPALIVE", "on") == "on"
WAIT_S = float(os.environ.get("LOAD_WAIT_MS", "0")) / 1000
STATUS: Counter[str] = Counter()
FAILURES: list[dict] = []


class HttpLoad(FastHttpUser):
    wait_time = constant(WAIT_S)
    # FastHttpUser keeps one connection per user; Connection: close makes each request new.
    headers = {} if KEEPALIVE else {"Connection": "close"}

    @task
    def get(self) -> None:
        with self.client.get(PATH, headers=self.headers, catch_response=True, name="GET") as resp:
            STATUS[str(resp.status_code)] += 1
            if resp.status_code != 200:
                uid = resp.headers.get("X-Unique-ID") if resp.headers else None
                FAILURES.append({"status": resp.status_code, "unique_id": uid})
                resp.failure(f"status {resp.status_code}")


@events.quitting.add_listener
def _write_status(environment, **_kwargs) -> None:
    with open("/out/client_status.json", "w") as out:
        json.dump(dict(STATUS), out, indent=1, sort_keys=True)
    with open("/out/client_failures.jsonl", "w") as out:
        out.writelines(json.dumps(f) + "\n" for f in FAILURES)
