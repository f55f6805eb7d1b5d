#!/bin/sh
# Locust distributed on one host: N worker processes and a master, all in the client
# container (its network namespace, so the census and capture see every connection).
#   distributed.sh N LOCUSTFILE MASTER_ARGS...
# The workers run the users; the master waits for all N, runs the test headless with
# MASTER_ARGS, writes its stats and tells the workers to quit. The script then waits for
# every worker to exit: a worker writes its own counts (clients/locustfiles/http_load.py)
# only once its users have stopped, which at 1,000 users takes longer than the master
# waits, so the load is over when the last worker is, not the master. It exits with the
# master's code. N and the file come from the harness (typed), never a shell string:
# "$@" passes the rest as they are.
set -eu
n=$1
file=$2
shift 2
pids=
i=0
while [ "$i" -lt "$n" ]; do
    locust -f "$file" --worker --master-host 127.0.0.1 --master-port 5557 \
        --loglevel WARNING &
    pids="$pids $!"
    i=$((i + 1))
done
code=0
locust -f "$file" --master --master-bind-host 127.0.0.1 --master-bind-port 5557 \
    --expect-workers "$n" --expect-workers-max-wait 60 "$@" || code=$?
if [ "$code" -ne 0 ]; then
    # a master that failed may not have told them to quit; SIGTERM is Locust's shutdown
    kill $pids 2>/dev/null || true
fi
for pid in $pids; do
    # a worker's own exit code is not the load's: the master's is
    wait "$pid" || true
done
exit "$code"
