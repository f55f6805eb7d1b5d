#!/usr/bin/env bash
# TCP-state census of the network namespace this process runs in.
#
# Usage: census.sh OUTFILE
#   CENSUS_INTERVAL_S   seconds between samples (default 0.1)
#   CENSUS_LISTEN_PORTS local ports of this namespace's servers, space-separated
#                       (default "8080 8443"): a socket on one of them was accepted
#                       here ("in"); any other socket was opened from here ("out").
#   CENSUS_SCHED_IDLE   1: run every sample under SCHED_IDLE, so that it gives the CPU
#                       at once to any other task that wakes up. Set in cells where
#                       a probe times closes: a running ss|awk delayed the probe's
#                       wake-up by ~2-3 ms (default 0: under a load that fills the
#                       CPUs, an idle-class census would hardly get to sample).
#
# OUTFILE (truncated at start), one block per sample, parsed by harness/analyse/census.py:
#   # census v1 interval_s=0.1 listen_ports=8080,8443
#   S 1732484400.123456          <- epoch seconds (µs), taken just before ss runs
#   ESTAB in 12                  <- <ss state> <in|out> <count>, non-zero counts only
#   TIME-WAIT out 3040
#   LISTEN in 2                  <- listeners, kept apart from the in/out connections
#
# Connections whose peer is a loopback address are not counted: inside a cell they are
# the stack's own machinery (health checks, the stats socket), not its traffic, and a
# health check every second showed up as TIME-WAIT in keep-alive cells.
#
# Runs until SIGTERM/SIGINT. Cost per sample: one ss, one awk; the timestamp and the
# wait between samples are bash builtins, so no extra processes are forked.
set -u
export LC_ALL=C # EPOCHREALTIME's decimal separator follows the locale

if [[ $# -ne 1 ]]; then
    echo "usage: census.sh OUTFILE" >&2
    exit 2
fi
outfile=$1
interval=${CENSUS_INTERVAL_S:-0.1}
listen_ports=${CENSUS_LISTEN_PORTS-8080 8443}

if [[ ! $interval =~ ^([0-9]+)(\.([0-9]{1,6})[0-9]*)?$ ]]; then
    echo "census.sh: CENSUS_INTERVAL_S=$interval is not a number of seconds like 0.1" >&2
    exit 2
fi
frac=${BASH_REMATCH[3]}000000
interval_us=$((10#${BASH_REMATCH[1]} * 1000000 + 10#${frac:0:6}))
if ((interval_us < 1000)); then
    echo "census.sh: CENSUS_INTERVAL_S=$interval is below 1 ms" >&2
    exit 2
fi
for port in $listen_ports; do
    if [[ ! $port =~ ^[0-9]+$ ]]; then
        echo "census.sh: CENSUS_LISTEN_PORTS has '$port', which is not a port number" >&2
        exit 2
    fi
done
if [[ ${CENSUS_SCHED_IDLE:-0} == 1 ]]; then
    chrt --idle --pid 0 $$ || { echo "census.sh: cannot switch to SCHED_IDLE" >&2; exit 2; }
fi
for tool in ss awk; do
    command -v "$tool" >/dev/null || { echo "census.sh: $tool not found" >&2; exit 2; }
done

exec {out}>"$outfile" || exit 2
# A pipe we hold both ends of never delivers data, so `read -t` on it is a sleep that
# needs no fork.
exec {nap}<> <(:)

# Exit from the trap itself: bash runs it at once during `read -t` (which would
# otherwise resume its wait), but only after a running ss|awk finishes, so every block
# in OUTFILE is whole. (A background job of a non-interactive shell ignores INT: stop
# this script with TERM.)
trap 'exit 0' TERM INT

printf '# census v1 interval_s=%s listen_ports=%s\n' "$interval" "${listen_ports// /,}" >&"$out"

# Aggregates one `ss -Htan` snapshot and prints it as one block in END, so the block
# reaches OUTFILE in a single write when awk exits. A line that is not a socket row
# (ss failed or warned) drops the whole sample, reported on stderr: a gap in the
# timeline is honest, a sample of zeros would read as "drained".
# shellcheck disable=SC2016
census_awk='
BEGIN {
    n = split(ports, p, " ")
    for (i = 1; i <= n; i++) inbound[p[i]] = 1
    split("ESTAB SYN-SENT SYN-RECV FIN-WAIT-1 FIN-WAIT-2 TIME-WAIT UNCONN CLOSE-WAIT LAST-ACK LISTEN CLOSING UNKNOWN", s, " ")
    for (i in s) known[s[i]] = 1
}
!($1 in known) || NF < 5 { bad = bad "\n  " $0; next }
$1 == "LISTEN" { count["LISTEN in"]++; next }
{
    port = $4
    sub(/.*:/, "", port)  # [::ffff:1.2.3.4]:8080, 10.0.0.2:8080, *:8080 -> 8080
    count[$1 " " ((port in inbound) ? "in" : "out")]++
}
END {
    if (bad != "") {
        printf "census.sh: sample at %s dropped, ss printed:%s\n", ts, bad > "/dev/stderr"
        exit 0
    }
    block = "S " ts "\n"
    for (k in count) block = block k " " count[k] "\n"
    printf "%s", block
}'

next_us=${EPOCHREALTIME/./}
while true; do
    ts=$EPOCHREALTIME
    ss -Htan 'not dst 127.0.0.0/8 and not dst [::1]' 2>&1 |
        awk -v ts="$ts" -v ports="$listen_ports" "$census_awk" >&"$out"
    # Fixed-rate schedule: sample n is due at start + n*interval; a late sample makes
    # the next wait shorter, and a sample later than a whole interval skips ahead.
    next_us=$((next_us + interval_us))
    now_us=${EPOCHREALTIME/./}
    wait_us=$((next_us - now_us))
    if ((wait_us <= 0)); then
        next_us=$now_us
        continue
    fi
    printf -v wait_s '%d.%06d' $((wait_us / 1000000)) $((wait_us % 1000000))
    read -r -t "$wait_s" -u "$nap" _
done
