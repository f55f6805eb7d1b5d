"""Closed-loop HTTP load: each Locust user sends GETs back to back.

Knobs (environment, set per cell by the harness):
  LOAD_PATH        request path and query, e.g. "/?size=4096"        [/]
  LOAD_KEEPALIVE   "on" reuses connections, "off" sends Connection: close  [on]
  LOAD_WAIT_MS     pause between a user's requests                    [0]

Besides Locust's own stats, it writes the status codes it saw to
/out/client_status.json, so the client's view can be set beside HAProxy's log.
"""

import json
import os
from collections import Counter

from locust import FastHttpUser, constant, events, task

PATH = os.environ.get("LOAD_PATH", "/")
KEEPALIVE = os.environ.get("LOAD_KEEPALIVE", "on") == "on"
WAIT_S = float(os.environ.get("LOAD_WAIT_MS", "0")) / 1000
STATUS: Counter[str] = Counter()


class HttpLoad(FastHttpUser):
    wait_time = constant(WAIT_S)
    # FastHttpUser keeps one connection per user; Connection: close makes each request new.
    headers = {} if KEEPALIVE else {"Connection": "close"}

    @task
    def get(self) -> None:
        with self.client.get(PATH, headers=self.headers, catch_response=True, name="GET") as resp:
            STATUS[str(resp.status_code)] += 1
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}")


@events.quitting.add_listener
def _write_status(environment, **_kwargs) -> None:
    with open("/out/client_status.json", "w") as out:
        json.dump(dict(STATUS), out, indent=1, sort_keys=True)
