#!/usr/bin/env bash
# Make sure the base image `debian:forky-slim` exists in the local Docker engine.
#
# Why: the Dockerfile builds every stage FROM debian:forky-slim (Debian testing: glibc 2.43 and
# python3.13, which Debian's llama.cpp/ggml packages need). On a normal machine Docker pulls it on
# first use; on a machine that cannot reach a container registry nothing can be pulled, so this
# script creates an equivalent image from Debian packages with debootstrap (minbase variant) and
# `docker import`s it under the same name. It is idempotent: when the image already exists it
# does nothing.
#
# Usage: build-support/docker-base-image.sh [IMAGE]   (IMAGE defaults to debian:forky-slim)
# Env:   DOCKER (docker client, default: docker on PATH, /usr/bin/docker preferred)
#        DEBIAN_MIRROR (optional debootstrap mirror URL; default: debootstrap's own default)
set -euo pipefail

image="${1:-debian:forky-slim}"
suite="${DEBIAN_SUITE:-forky}"

# shellcheck source=build-support/docker-client.sh
source "$(dirname "${BASH_SOURCE[0]}")/docker-client.sh"
docker_cli="$(docker_client docker-base-image)" || exit 1

if "${docker_cli}" image inspect "${image}" >/dev/null 2>&1; then
  echo "docker-base-image: ${image} is present; nothing to do."
  exit 0
fi

# Try the ordinary way first: a registry may be reachable.
if "${docker_cli}" pull "${image}" >/dev/null 2>&1; then
  echo "docker-base-image: pulled ${image}."
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "docker-base-image: ${image} is missing, cannot be pulled, and debootstrap is not installed." >&2
  echo "  Fix: apt-get install debootstrap (then run this script again as root)." >&2
  exit 1
fi
if [[ "$(id -u)" -ne 0 ]]; then
  echo "docker-base-image: debootstrap needs root; run this script with sudo." >&2
  exit 1
fi

rootfs="$(mktemp -d "${TMPDIR:-/tmp}/${suite}-rootfs.XXXXXX")"
scripts="$(mktemp -d "${TMPDIR:-/tmp}/debootstrap.XXXXXX")"
trap 'rm -rf "${rootfs}" "${scripts}"' EXIT

# An older debootstrap (bookworm's) has no script for a newer suite; testing is built exactly
# like unstable, so lend it unstable's script through a private copy of debootstrap's folder.
cp -a /usr/share/debootstrap/. "${scripts}/"
if [[ ! -e "${scripts}/scripts/${suite}" ]]; then
  ln -s sid "${scripts}/scripts/${suite}"
fi
export DEBOOTSTRAP_DIR="${scripts}"

echo "docker-base-image: ${image} not found; creating it with debootstrap (--variant=minbase ${suite}), about a minute..."
debootstrap_args=(--variant=minbase "${suite}" "${rootfs}")
if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
  debootstrap_args+=("${DEBIAN_MIRROR}")
fi
debootstrap "${debootstrap_args[@]}" >"${rootfs}.log" 2>&1 || {
  echo "docker-base-image: debootstrap failed; last lines of its log:" >&2
  tail -n 20 "${rootfs}.log" >&2
  rm -f "${rootfs}.log"
  exit 1
}
rm -f "${rootfs}.log"

# Trim what the official slim image also leaves out: package lists, caches, docs, man pages,
# locales other than the C/English ones.
rm -rf "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/*.bin "${rootfs}"/var/cache/apt/archives/*.deb \
  "${rootfs}"/usr/share/doc/* "${rootfs}"/usr/share/man/* "${rootfs}"/usr/share/info/* \
  "${rootfs}"/var/log/*.log "${rootfs}"/tmp/*
find "${rootfs}/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# Same dpkg exclusions as the official slim image, so later apt-get installs stay small too.
cat >"${rootfs}/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
# Keep apt from caching downloaded packages inside images.
cat >"${rootfs}/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG

tar -C "${rootfs}" -c . | "${docker_cli}" import --change 'CMD ["bash"]' - "${image}" >/dev/null
echo "docker-base-image: created ${image} ($("${docker_cli}" image inspect --format '{{.Size}}' "${image}") bytes)."
