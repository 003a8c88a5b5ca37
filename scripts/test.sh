#!/usr/bin/env bash
# Runs the whole test suite: unit tests, then the integration tests (real binaries, the local Docker
# engine, a real Jupyter image) on SQLite, then the integration tests again on PostgreSQL.
#
#   bash scripts/test.sh [extra cargo test arguments]
#
# Builds the test image first (once; cached by tag), installs the Python signer the tests use to
# sign launches independently of our code, and starts a throwaway PostgreSQL server on loopback
# (scripts/postgres.sh), stopped again at the end. With CI set, a missing part fails instead of
# skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-image.sh
if ! python3 -c 'import oauthlib' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check oauthlib
fi

echo "== tests on SQLite"
cargo test --locked --all-targets "$@"

echo "== integration tests on PostgreSQL"
if pg_env="$(bash scripts/postgres.sh start)"; then
    eval "$pg_env"
    trap 'bash scripts/postgres.sh stop "$MOOC_TEST_PGDATA"' EXIT
    MOOC_TEST_DATABASE=postgres cargo test --locked --test '*' "$@"
elif [ -n "${CI:-}" ]; then
    echo "CI is set and PostgreSQL could not be started" >&2
    exit 1
else
    echo "*** SKIPPED: PostgreSQL could not be started, so the PostgreSQL pass did not run ***" >&2
fi
