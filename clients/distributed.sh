#!/bin/sh
# Locust distributed on one host: N worker processes and a master, all in the client
# container (its network namespace, so the census and capture see every connection).
#   distributed.sh N LOCUSTFILE MASTER_ARGS...
# The workers run the users; the master waits for all N, runs the test headless with
# MASTER_ARGS, writes the stats, and stops the workers when it quits (they are its
# children once it execs). N and the file come from the harness (typed), never a shell
# string: "$@" passes the rest as they are.
set -eu
n=$1
file=$2
shift 2
i=0
while [ "$i" -lt "$n" ]; do
    locust -f "$file" --worker --master-host 127.0.0.1 --master-port 5557 \
        --loglevel WARNING &
    i=$((i + 1))
done
exec locust -f "$file" --master --master-bind-host 127.0.0.1 --master-bind-port 5557 \
    --expect-workers "$n" --expect-workers-max-wait 60 "$@"
