#!/usr/bin/env bash
# Runs the whole test suite: unit tests, then the integration tests (real binaries, the local Docker
# engine, a real Jupyter image) on SQLite, then the integration tests again on PostgreSQL.
#
#   bash scripts/test.sh [extra cargo test arguments]
#
# Builds the test image first (once; cached by tag), installs the Python signer the tests use to
# sign launches independently of our code and stunnel (a TLS endpoint in front of the engine), and
# starts a throwaway PostgreSQL server on loopback (scripts/postgres.sh), stopped again at the end.
# With CI set, a missing part fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-image.sh
# stunnel and openssl stand in for a Docker engine with TLS client certificates (tests/scaleout.rs).
if ! command -v stunnel >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q stunnel4 openssl >/dev/null; }
        apt_install || { apt-get update -q >/dev/null && apt_install; }
    fi
fi
if ! python3 -c 'import oauthlib' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check oauthlib
fi

pg=0
if pg_env="$(bash scripts/postgres.sh start)"; then
    eval "$pg_env"
    pg=1
    trap 'bash scripts/postgres.sh stop "$MOOC_TEST_PGDATA"' EXIT
elif [ -n "${CI:-}" ]; then
    echo "CI is set and PostgreSQL could not be started" >&2
    exit 1
else
    echo "*** PostgreSQL could not be started: the PostgreSQL pass will be SKIPPED ***" >&2
fi

echo "== tests on SQLite"
cargo test --locked --all-targets "$@"

if [ "$pg" = 1 ]; then
    echo "== integration tests on PostgreSQL"
    MOOC_TEST_DATABASE=postgres cargo test --locked --test '*' "$@"
else
    echo "*** SKIPPED: the integration tests on PostgreSQL ***" >&2
fi
