#!/usr/bin/env bash
# Build (cached) the CPU llama.cpp engine with docker/Dockerfile and export it to .engine/cpu/.
#
# Why: tests and local development run the very engine the image ships, without a second
# compile on the host. The Docker build cache (and the ccache mount) make repeated runs cheap.
#
# Usage: build-support/engine-export.sh [DEST]   (DEST defaults to <repo>/.engine/cpu)
# Env:   DOCKER        docker client (default: /usr/bin/docker when present, else docker on PATH)
#        BUILD_JOBS    parallel compile jobs inside the build (default: all cores)
#        ENGINE_TARGET the export stage (default engine-cpu-export; the CPU benchmark uses
#                      engine-cpu-native-export)
#        BUILD_NICE    niceness of the compilers inside the build (default 0)
#        CA_BUNDLE     CA bundle passed to pip as a BuildKit secret (default: the system bundle
#                      when it exists; never copied into an image)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-${repo_root}/.engine/cpu}"
pin_file="${repo_root}/3rdparty/llama.cpp/pin.py"

# shellcheck source=build-support/docker-client.sh
source "${repo_root}/build-support/docker-client.sh"
docker_cli="$(docker_client engine-export)" || exit 1

# read_pin NAME → the value of the line `NAME = "value"` in pin.py
read_pin() {
  local value
  value="$(sed -n "s/^$1 *= *\"\\([^\"]*\\)\" *\$/\\1/p" "${pin_file}")"
  if [[ -z "${value}" ]]; then
    echo "engine-export: ${pin_file} has no line $1 = \"...\"" >&2
    exit 1
  fi
  printf '%s' "${value}"
}
version="$(read_pin LLAMA_CPP_PYTHON_VERSION)"
sha256="$(read_pin LLAMA_CPP_PYTHON_SHA256)"

"${repo_root}/build-support/docker-base-image.sh"

build_args=(
  --network host
  --file "${repo_root}/docker/Dockerfile"
  --target "${ENGINE_TARGET:-engine-cpu-export}"
  --build-arg "LLAMA_CPP_PYTHON_VERSION=${version}"
  --build-arg "LLAMA_CPP_PYTHON_SHA256=${sha256}"
  --output "type=local,dest=${dest}.tmp"
)
if [[ -n "${BUILD_JOBS:-}" ]]; then
  build_args+=(--build-arg "BUILD_JOBS=${BUILD_JOBS}")
fi
if [[ -n "${BUILD_NICE:-}" ]]; then
  build_args+=(--build-arg "BUILD_NICE=${BUILD_NICE}")
fi
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
if [[ -s "${ca_bundle}" ]]; then
  build_args+=(--secret "id=ca,src=${ca_bundle}")
fi

# The engine stages need no file from the build context: build from an empty one.
context="$(mktemp -d "${TMPDIR:-/tmp}/engine-context.XXXXXX")"
trap 'rm -rf "${context}" "${dest}.tmp"' EXIT

echo "engine-export: building llama.cpp (llama-cpp-python ${version} sdist) CPU engine → ${dest}"
start="$(date +%s)"
rm -rf "${dest}.tmp"
DOCKER_BUILDKIT=1 "${docker_cli}" build "${build_args[@]}" "${context}"
rm -rf "${dest}"
mkdir -p "$(dirname "${dest}")"
mv "${dest}.tmp" "${dest}"
echo "engine-export: done in $(($(date +%s) - start)) s; $(du -sh "${dest}" | cut -f1) in ${dest}"
if [[ -x "${dest}/llama-server" ]]; then
  "${dest}/llama-server" --version 2>&1 | sed 's/^/engine-export: /' || true
fi
