#!/usr/bin/env bash
# Extra Docker engines on this one machine, each standing in for a host of its own, for
# testing stacks that span machines (README: "Stacks that span machines").
#
#   scripts/engines-multi.sh up [N]     start N engines (default 3), idempotently
#   scripts/engines-multi.sh down [N]   stop them and remove their namespaces and contexts
#   scripts/engines-multi.sh purge [N]  down, and remove their data (the images loaded)
#
# Engine i (1..N) is a dockerd in its own network namespace `harness-e<i>`, joined to the
# others by a veth link to a bridge in the namespace `harness-hub`: its "host" address is
# 10.231.0.<10+i>. It has its own data root (/var/lib/harness-engines/e<i>: images stay
# loaded between runs), exec root, pidfile, containerd (the one dockerd starts under its
# exec root) and unix socket (/run/harness-engines/e<i>/docker.sock), and a Docker context
# `harness-e<i>` that points at it. Its iptables rules, its ip_forward and its bridges
# live in its own network namespace: nothing of the engine at /var/run/docker.sock (the
# root namespace's) is touched. Log: /run/harness-engines/e<i>/dockerd.log.
set -euo pipefail

verb=${1:-up}
count=${2:-3}
case "$count" in [1-9]) ;; *) echo "engines-multi: N must be 1-9" >&2; exit 2 ;; esac

RUN=/run/harness-engines
DATA=/var/lib/harness-engines
HUB=harness-hub
HUB_NET=10.231.0

say() { printf 'engines-multi: %s\n' "$*" >&2; }

answers() { timeout 5 docker -H "unix://$RUN/e$1/docker.sock" version >/dev/null 2>&1; }

hub_up() {
    ip netns list | grep -qx "$HUB\( .*\)\?" || ip netns add "$HUB"
    ip -n "$HUB" link show hbr0 >/dev/null 2>&1 || {
        ip -n "$HUB" link add hbr0 type bridge
        ip -n "$HUB" link set lo up
        ip -n "$HUB" link set hbr0 up
    }
}

engine_up() {
    local i=$1 ns="harness-e$1" dir="$RUN/e$1"
    mkdir -p "$dir" "$DATA/e$i"
    if ! ip netns list | grep -qx "$ns\( .*\)\?"; then
        ip netns add "$ns"
    fi
    if ! ip -n "$ns" link show uplink >/dev/null 2>&1; then
        ip link add "he$i" type veth peer name uplink
        ip link set "he$i" netns "$HUB"
        ip link set uplink netns "$ns"
        ip -n "$HUB" link set "he$i" master hbr0 up
        ip -n "$ns" addr add "$HUB_NET.$((10 + i))/24" dev uplink
        ip -n "$ns" link set uplink up
        ip -n "$ns" link set lo up
    fi
    if answers "$i"; then
        say "e$i already answers"
    else
        # --bridge=none: no docker0 (cells make their own networks); --iptables stays on
        # inside this namespace: published ports are DNAT rules there, as on a real host.
        # --containerd-namespace: distinct even if a system containerd were shared.
        # Inherited descriptors closed (3-9): a caller's `flock` would otherwise be held
        # by the daemon for as long as it lives, blocking everyone who waits on that lock.
        # Like `ip netns exec`, a mount namespace with this network namespace's sysfs;
        # unlike it, the cgroup hierarchy stays mounted under it (dockerd needs it).
        # setsid first: the daemon and its helpers in a session of their own, whatever
        # ends the shell that started them.
        setsid nsenter --net="/run/netns/$ns" unshare --mount --propagation slave \
            sh -c 'mkdir -p "$1/cg" && mount --rbind /sys/fs/cgroup "$1/cg" &&
                mount -t sysfs sysfs /sys && mount --move "$1/cg" /sys/fs/cgroup &&
                shift && exec "$@"' sh "$dir" dockerd \
            --host "unix://$dir/docker.sock" \
            --data-root "$DATA/e$i" \
            --exec-root "$dir/exec" \
            --pidfile "$dir/dockerd.pid" \
            --containerd-namespace "harness-e$i" \
            --containerd-plugins-namespace "harness-e$i-plugins" \
            --cgroup-parent "/harness-e$i" \
            --bridge none \
            --userland-proxy=false \
            >>"$dir/dockerd.log" 2>&1 </dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
    fi
    if ! docker context inspect "harness-e$i" >/dev/null 2>&1; then
        docker context create "harness-e$i" --description "harness test engine $i" \
            --docker "host=unix://$dir/docker.sock" >/dev/null
    fi
}

engine_down() {
    local i=$1 ns="harness-e$1" dir="$RUN/e$1"
    if [ -f "$dir/dockerd.pid" ]; then
        local pid
        pid=$(cat "$dir/dockerd.pid")
        # only a dockerd started with this socket: a stale pidfile may name another process
        if grep -qa -- "$dir/docker.sock" "/proc/$pid/cmdline" 2>/dev/null; then
            # its containers first (by its own socket), then the daemon, which stops containerd
            ids=$(timeout 20 docker -H "unix://$dir/docker.sock" ps -aq 2>/dev/null || true)
            [ -z "$ids" ] || timeout 60 docker -H "unix://$dir/docker.sock" rm -f $ids >/dev/null 2>&1 || true
            kill -TERM "$pid"
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    fi
    docker context rm -f "harness-e$i" >/dev/null 2>&1 || true
    ip netns del "$ns" 2>/dev/null || true  # takes its end of the veth, and so both ends
    rm -rf "$dir"
}

case "$verb" in
    up)
        hub_up
        for i in $(seq 1 "$count"); do engine_up "$i"; done
        for i in $(seq 1 "$count"); do
            for _ in $(seq 1 300); do answers "$i" && break; sleep 0.1; done
            answers "$i" || { say "e$i did not answer within 30 s; see $RUN/e$i/dockerd.log"; exit 1; }
        done
        say "$count engine(s) up: contexts harness-e1..harness-e$count, hosts $HUB_NET.11..$HUB_NET.$((10 + count))"
        ;;
    down | purge)
        for i in $(seq 1 "$count"); do engine_down "$i"; done
        ip netns del "$HUB" 2>/dev/null || true
        if [ "$verb" = purge ]; then rm -rf "$DATA"; fi
        say "$count engine(s) down"
        ;;
    *)
        echo "usage: $0 up|down|purge [N]" >&2
        exit 2
        ;;
esac
