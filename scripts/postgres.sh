#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests and benchmarks, from Debian's packages.
#
#   eval "$(bash scripts/postgres.sh start)"   # exports MOOC_TEST_POSTGRES_URL and MOOC_TEST_PGDATA
#   bash scripts/postgres.sh stop "$MOOC_TEST_PGDATA"
#
# `start` installs the server package when missing (as root), initialises a cluster in a new temp
# directory (trust authentication, listening on 127.0.0.1 only, on a free port) and starts it.
# As root the server runs as the `postgres` user, since PostgreSQL refuses to run as root.
set -euo pipefail

bindir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
        if [ "$(id -u)" = 0 ]; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 || {
                apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
            }
            d="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
        else
            echo "PostgreSQL server binaries are missing: apt-get install postgresql" >&2
            exit 2
        fi
    fi
    echo "$d"
}

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        su postgres -s /bin/sh -c "$*"
    else
        sh -c "$*"
    fi
}

case "${1:-}" in
start)
    BIN="$(bindir)"
    DIR="$(mktemp -d "${TMPDIR:-/tmp}/mooc-pg.XXXXXX")"
    PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    if [ "$(id -u)" = 0 ]; then chown postgres "$DIR"; fi
    as_owner "'$BIN/initdb' -D '$DIR/data' -U postgres -A trust -E UTF8 --no-sync" >"$DIR.init.log" 2>&1 || {
        cat "$DIR.init.log" >&2
        exit 2
    }
    as_owner "'$BIN/pg_ctl' -D '$DIR/data' -l '$DIR/server.log' -w -t 60 \
        -o \"-c listen_addresses=127.0.0.1 -p $PORT -k '$DIR' -c max_connections=300 -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off\" start" >&2 || {
        cat "$DIR/server.log" >&2
        exit 2
    }
    echo "export MOOC_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
    echo "export MOOC_TEST_PGDATA=$DIR"
    ;;
stop)
    DIR="${2:?usage: postgres.sh stop DIR}"
    BIN="$(bindir)"
    as_owner "'$BIN/pg_ctl' -D '$DIR/data' -m fast -w stop" >/dev/null 2>&1 || true
    rm -rf "$DIR" "$DIR.init.log"
    ;;
*)
    echo "usage: postgres.sh start | stop DIR" >&2
    exit 2
    ;;
esac
