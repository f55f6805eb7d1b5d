-- The harness's wrk script (Debian's wrk 4.1, LuaJIT): the same request as
-- clients/locustfiles/http_load.py sends, and every outcome as JSON for the host.
--
-- Knobs (environment, set per cell by the harness, as for Locust):
--   LOAD_PATH       request path and query, e.g. "/?size=4096"              [/]
--   LOAD_KEEPALIVE  "on" reuses connections, "off" sends Connection: close   [on]
--   LOAD_WAIT_MS    pause before each request of a connection, ms            [0]
--   WRK_OUT         where done() writes its JSON                 [/out/wrk.json]
--
-- The JSON (harness/analyse/wrk.py reads it): wrk's summary (requests completed,
-- duration in µs, bytes, socket errors, responses with status > 399), the threads,
-- and the latency histogram in whole µs. wrk records each completed request's time
-- from its send to its response's end, then (src/wrk.c, src/stats.c stats_correct)
-- adds the samples coordinated omission hid: for each latency L >= 2E, where E is the
-- run's duration divided by the requests per connection, the values L-E, L-2E, ... > E.
-- The histogram holds both, so its count exceeds the requests.
--
-- wrk's Lua API walks its µs array from min to max on every call (latency(i): the
-- i-th distinct value and its count; latency:percentile(p)). The exact histogram costs
-- about distinct values x (max - min) steps: done() writes it when that is within
-- BUDGET, else (a wide tail: seconds-long stalls) "latency_quantiles", the values at n
-- evenly spaced quantiles, n as large as the budget allows (at least 101).
-- No response() callback: defining one makes wrk parse every header in Lua.

local path = os.getenv("LOAD_PATH") or "/"
local keepalive = (os.getenv("LOAD_KEEPALIVE") or "on") == "on"
local wait_ms = tonumber(os.getenv("LOAD_WAIT_MS") or "0") or 0
local out = os.getenv("WRK_OUT") or "/out/wrk.json"
local threads = 0

wrk.method = "GET"
wrk.path = path
if not keepalive then
  wrk.headers["Connection"] = "close"
end

function setup(thread)
  threads = threads + 1
end

if wait_ms > 0 then
  function delay()
    return wait_ms
  end
end

-- Steps of wrk's C loops: about a second or two. WRK_LATENCY_BUDGET exists for the
-- harness's own test of the quantile form (tests/integration/test_wrk_script.py).
local BUDGET = tonumber(os.getenv("WRK_LATENCY_BUDGET") or "") or 2e9

function done(summary, latency, requests)
  local e = summary.errors
  local f = assert(io.open(out, "w"))
  f:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "threads": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}',
    summary.requests, summary.duration, summary.bytes, threads,
    e.connect, e.read, e.write, e.status, e.timeout))
  local span = latency.max - latency.min + 1
  local distinct = summary.requests > 0 and #latency or 0
  if distinct * span <= BUDGET then
    f:write(', "latency_us": [')
    for i = 1, distinct do
      local value, count = latency(i)
      f:write(string.format('%s[%d, %d]', i > 1 and ", " or "", value, count))
    end
  else
    local n = math.max(101, math.floor(BUDGET / span))
    f:write(', "latency_quantiles_us": [')
    for i = 1, n do
      -- the midpoint of the i-th of n equal shares of the distribution
      f:write(string.format('%s%d', i > 1 and ", " or "", latency:percentile((i - 0.5) / n * 100)))
    end
  end
  f:write("]}\n")
  f:close()
end
