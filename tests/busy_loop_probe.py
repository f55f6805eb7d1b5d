"""Run as a script: 5 probes under gevent (as under Locust) against a target that closes
100 ms after our FIN, while another greenlet keeps the event loop busy (pure Python, no
yield) from 60 to 1060 ms. Prints the sorted close delays as JSON.

Usage: python busy_loop_probe.py LOCUSTFILES_DIR PORT
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, sys.argv[1])
import probe  # noqa: E402


def hog() -> None:
    gevent.sleep(0.06)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        pass


cfg = probe.ProbeConfig(
    host="127.0.0.1", port=int(sys.argv[2]), path="/?fin_delay_ms=100", connections=5, deadline_s=5
)
gevent.spawn(hog)
print(json.dumps(sorted(s["delay_ms"] for s in probe.run_probes(cfg))))
