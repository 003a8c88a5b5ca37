#!/usr/bin/env bash
# Builds the offline Jupyter image the tests use, from Debian's packages only (no registry).
#
#   scripts/test-image.sh [TAG]        (default tag: mooc-lti/notebook:test)
#
# Does nothing when the tag already exists, so only the first run pays (about 2 minutes).
# The image runs Debian's notebook 6 as uid 1000 ("jovyan") with /home/jovyan as the notebook root.
set -euo pipefail

TAG="${1:-${MOOC_TEST_IMAGE:-mooc-lti/notebook:test}}"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "test image $TAG already present"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
    else
        echo "debootstrap is missing: install it (apt-get install debootstrap) or run as root" >&2
        exit 2
    fi
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mooc-test-image.XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
ROOT="$WORK/root"

echo "building $TAG from Debian $SUITE (debootstrap, about 2 minutes)"
# python3-cffi-backend and libboost-regex1.74.0 satisfy virtual packages that minbase cannot resolve alone.
debootstrap --variant=minbase \
    --include=jupyter-notebook,python3-cffi-backend,libboost-regex1.74.0,ca-certificates \
    "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
    tail -n 30 "$WORK/debootstrap.log" >&2
    exit 2
}

chroot "$ROOT" /usr/sbin/groupadd --gid 1000 jovyan
chroot "$ROOT" /usr/sbin/useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash jovyan
# Trim what a notebook server never needs to keep the image small.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* \
    "$ROOT"/usr/share/doc "$ROOT"/usr/share/man "$ROOT"/usr/share/locale

tar --numeric-owner -C "$ROOT" -c . | docker import \
    --change 'USER 1000' \
    --change 'WORKDIR /home/jovyan' \
    --change 'ENV HOME=/home/jovyan' \
    --change 'EXPOSE 8888' \
    --change 'CMD ["jupyter-notebook", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--NotebookApp.port_retries=0"]' \
    --change 'LABEL mooc-lti.test-image=1' \
    - "$TAG" >/dev/null
echo "built $TAG"
