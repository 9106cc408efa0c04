#!/usr/bin/env bash
# Export the image's CPU engine (Debian's llama-server, llama-bench, the 14 CPU variants, with
# their own glibc) into a folder runnable on this host: docker/Dockerfile stage engine-cpu-export.
#
# Why: tests and benchmarks run the very engine the image ships, byte for byte. Docker's build
# cache makes a second run (or a later image build) a cache hit; nothing is compiled.
#
# Usage: build-support/engine-export.sh [DEST]   (DEST defaults to <repo>/.engine/cpu)
# Env:   DOCKER   docker client (default: /usr/bin/docker when present, else docker on PATH)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-${repo_root}/.engine/cpu}"

# shellcheck source=build-support/docker-client.sh
source "${repo_root}/build-support/docker-client.sh"
docker_cli="$(docker_client engine-export)" || exit 1
"${repo_root}/build-support/docker-base-image.sh"

# The stage needs only these files of the build context (the image needs the PEX and models too).
context="$(mktemp -d "${TMPDIR:-/tmp}/engine-context.XXXXXX")"
trap 'rm -rf "${context}" "${dest}.tmp"' EXIT
mkdir -p "${context}/docker" "${context}/3rdparty/debian"
cp -a "${repo_root}/docker/Dockerfile" "${repo_root}/docker/debian" \
  "${repo_root}/docker/engine-export" "${context}/docker/"
cp -a "${repo_root}/3rdparty/debian/engine.lock" "${context}/3rdparty/debian/"

echo "engine-export: exporting the image's CPU engine (Debian packages) → ${dest}"
start="$(date +%s)"
rm -rf "${dest}.tmp"
DOCKER_BUILDKIT=1 "${docker_cli}" build --network host --file "${context}/docker/Dockerfile" \
  --target engine-cpu-export --output "type=local,dest=${dest}.tmp" "${context}"
rm -rf "${dest}"
mkdir -p "$(dirname "${dest}")"
mv "${dest}.tmp" "${dest}"
echo "engine-export: done in $(($(date +%s) - start)) s; $(du -sh "${dest}" | cut -f1) in ${dest}"
# Newer than its inputs: test-prereqs.sh exports again only after a change.
touch "${dest}/llama-server"
"${dest}/llama-server" --version 2>&1 | sed 's/^/engine-export: /' || true
