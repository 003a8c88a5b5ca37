#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests that drive the real binaries against
# the local Docker engine with a real Jupyter image.
#
#   bash scripts/test.sh [extra cargo test arguments]
#
# Builds the test image first (once; cached by tag) and installs the Python signer the tests use to
# sign launches independently of our own code. With CI set, a missing part fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-image.sh
if ! python3 -c 'import oauthlib' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check oauthlib
fi

cargo test --locked --all-targets "$@"
