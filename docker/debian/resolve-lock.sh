#!/bin/sh
# Run inside debian:forky-slim by build-support/debian-lock.sh: resolve every set of
# packages.txt in order (each on top of the previous one, as the image installs them) and print
# one lock line per .deb: "<set> <package> <version> <sha256>".
set -eu
# shellcheck source=docker/debian/apt-setup.sh
. /tmp/debian/apt-setup.sh
apt-get update -qq >/dev/null
install_driver_stub
awk '!/^#/ && NF { print $1 }' /tmp/debian/packages.txt >/tmp/sets
while read -r set; do
  # The .debs apt would fetch (file names: <package>_<version>_<arch>.deb, ':' written %3a),
  # then each one's SHA256 from the mirror's Packages index.
  # shellcheck disable=SC2046 # one word per package
  apt-get install --print-uris -qq --no-install-recommends $(set_packages "${set}") </dev/null |
    sed -n "s/^'[^']*' \([^_]*\)_\([^_]*\)_[^ ]*\.deb .*$/\1 \2/p" | sed 's/%3a/:/g' | sort |
    while read -r name version; do
      sha="$(apt-cache show "${name}=${version}" | sed -n 's/^SHA256: //p' | head -n 1)"
      echo "${set} ${name} ${version} ${sha}"
    done
  # shellcheck disable=SC2046
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    $(set_packages "${set}") </dev/null >/dev/null
done </tmp/sets
