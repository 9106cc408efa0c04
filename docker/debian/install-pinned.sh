#!/bin/sh
# install-pinned.sh SET — install a set of packages.txt at the exact versions of
# /tmp/debian/engine.lock, checking the sha256 of every .deb before dpkg sees it. Used by the
# Dockerfile. A pinned version that the mirror no longer serves, a .deb that is not pinned, or a
# checksum that differs stops the build with the package named and the fix.
set -eu
# shellcheck source=docker/debian/apt-setup.sh
. /tmp/debian/apt-setup.sh
set_name="$1"
lock=/tmp/debian/engine.lock
refresh="refresh the pins with build-support/debian-lock.sh (it rewrites 3rdparty/debian/engine.lock from the mirror), then build again"

apt-get update -qq
[ "${set_name}" = gpu ] && install_driver_stub

pins="$(awk -v set="${set_name}" '$1 == set { print $2 "=" $3 }' "${lock}")"
[ -n "${pins}" ] || {
  echo "install-pinned: ${lock} has no '${set_name}' lines; ${refresh}" >&2
  exit 1
}
missing=""
for pin in ${pins}; do
  if ! apt-cache show "${pin}" 2>/dev/null | grep -q "^Package: "; then
    name="${pin%%=*}"
    now="$(apt-cache policy "${name}" | sed -n 's/^ *Candidate: //p')"
    missing="${missing}  ${name} ${pin#*=} (the mirror serves ${now:-no version})\n"
  fi
done
if [ -n "${missing}" ]; then
  printf 'install-pinned: pinned Debian package versions have left the mirror:\n%b' "${missing}" >&2
  echo "Fix: ${refresh}." >&2
  exit 1
fi

archives=/var/cache/apt/archives
rm -f "${archives}"/*.deb
# shellcheck disable=SC2086 # one word per pin
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --download-only ${pins} >/dev/null
bad=""
for deb in "${archives}"/*.deb; do
  [ -f "${deb}" ] || continue
  name="$(dpkg-deb -f "${deb}" Package)"
  version="$(dpkg-deb -f "${deb}" Version)"
  want="$(awk -v s="${set_name}" -v n="${name}" -v v="${version}" '$1 == s && $2 == n && $3 == v { print $4 }' "${lock}")"
  got="$(sha256sum "${deb}" | cut -d' ' -f1)"
  if [ -z "${want}" ]; then
    bad="${bad}  ${name} ${version} is not pinned (a dependency changed)\n"
  elif [ "${want}" != "${got}" ]; then
    bad="${bad}  ${name} ${version}: sha256 ${got}, pinned ${want}\n"
  fi
done
if [ -n "${bad}" ]; then
  printf 'install-pinned: the downloaded packages do not match the pins:\n%b' "${bad}" >&2
  echo "Fix: ${refresh}." >&2
  exit 1
fi
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${pins} >/dev/null
rm -rf /var/lib/apt/lists/* "${archives}"/*.deb /etc/apt/apt.conf.d/99mentator-snapshot \
  /etc/apt/sources.list.d/sid-contrib-non-free.list
