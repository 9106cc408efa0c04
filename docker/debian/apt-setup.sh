#!/bin/sh
# Sourced by the image build (install-pinned.sh) and by the lock refresh (resolve-lock.sh), so
# both see the same apt: the base image's forky sources, plus unstable's contrib and non-free
# components (the CUDA backend and the CUDA 12 libraries exist only there), derived from the base
# image's own sources line so that no mirror is ever named here; and a stub package standing in
# for the NVIDIA driver library the CUDA backend depends on.
set -eu

sources=/etc/apt/sources.list
[ -s "${sources}" ] || {
  echo "apt-setup: ${sources} is empty; the base image must list its Debian mirror there" >&2
  exit 1
}
sed -n 's/^deb \([^ ]*\) forky main$/deb \1 sid contrib non-free/p' "${sources}" \
  >/etc/apt/sources.list.d/sid-contrib-non-free.list
[ -s /etc/apt/sources.list.d/sid-contrib-non-free.list ] || {
  echo "apt-setup: no 'deb <mirror> forky main' line in ${sources} to derive unstable's from" >&2
  exit 1
}
# Debian testing/unstable mirrors can be frozen snapshots whose Release files are past their
# Valid-Until date; the pins (versions + sha256 in the lock) are what guarantee the content.
echo 'Acquire::Check-Valid-Until "false";' >/etc/apt/apt.conf.d/99mentator-snapshot

# libggml0-backend-cuda depends on "libcuda1 | libcuda.so.1": satisfied by this stub, so apt never
# installs Debian's NVIDIA driver userspace. An image must not carry a driver library: the NVIDIA
# container runtime mounts the host's libcuda.so.1, and a bundled one of another version breaks
# CUDA.
install_driver_stub() {
  stub=/tmp/mentator-no-nvidia-driver
  mkdir -p "${stub}/DEBIAN"
  cat >"${stub}/DEBIAN/control" <<'CONTROL'
Package: mentator-no-nvidia-driver
Version: 1
Architecture: all
Maintainer: Mentator LLM Service
Provides: libcuda.so.1 (= 999)
Description: stand-in for the NVIDIA driver library (mounted by the container runtime)
CONTROL
  dpkg-deb --build "${stub}" /tmp/mentator-no-nvidia-driver.deb >/dev/null
  dpkg -i /tmp/mentator-no-nvidia-driver.deb >/dev/null
  rm -rf "${stub}" /tmp/mentator-no-nvidia-driver.deb
}

# The packages a set of packages.txt asks for.
set_packages() {
  awk -v set="$1" '$1 == set { for (i = 2; i <= NF; i++) print $i }' /tmp/debian/packages.txt
}
