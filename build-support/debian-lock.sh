#!/usr/bin/env bash
# Refresh 3rdparty/debian/engine.lock: the exact version and sha256 of every .deb the images
# install on top of debian:forky-slim (docker/debian/packages.txt), resolved now from the
# machine's Debian mirror inside a throw-away container. Run it when a build says a pinned
# version has left the mirror, or after changing packages.txt; review and commit the diff.
#
# Usage: build-support/debian-lock.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lock="${root}/3rdparty/debian/engine.lock"

# shellcheck source=build-support/docker-client.sh
source "${root}/build-support/docker-client.sh"
docker_cli="$(docker_client debian-lock)" || exit 1
"${root}/build-support/docker-base-image.sh"

tmp="$(mktemp "${TMPDIR:-/tmp}/engine-lock.XXXXXX")"
trap 'rm -f "${tmp}"' EXIT
{
  echo "# Debian packages of the images, pinned: <set> <package> <version> <sha256 of the .deb>."
  echo "# Written by build-support/debian-lock.sh from docker/debian/packages.txt; do not edit."
  "${docker_cli}" run --rm --network host \
    -v "${root}/docker/debian:/tmp/debian:ro" debian:forky-slim sh /tmp/debian/resolve-lock.sh
} >"${tmp}"
count="$(grep -vc '^#' "${tmp}")"
[[ "${count}" -gt 0 ]] || {
  echo "debian-lock: nothing was resolved" >&2
  exit 1
}
mv "${tmp}" "${lock}"
trap - EXIT
echo "debian-lock: ${count} packages pinned in ${lock}"
