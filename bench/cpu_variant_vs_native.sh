#!/usr/bin/env bash
# Benchmark (prints, never asserts): llama-bench tokens/s of the shipped CPU engine (Debian's
# ggml, which picks the best libggml-cpu-<variant>.so for this CPU at run time) vs a
# -march=native build (bench/native-engine.Dockerfile: see there which source it builds), on
# SmolLM2, same thread count. The native binary runs with the exported engine's glibc and loader.
#
#   bench/cpu_variant_vs_native.sh [MODEL]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL="${1:-${MENTATOR_TEST_MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}}"
ENGINE="${MENTATOR_ENGINE_DIR:-$ROOT/.engine/cpu}"
NATIVE="$ROOT/.engine/cpu-native"
THREADS="${THREADS:-$(nproc)}"

[[ -x "$ENGINE/llama-bench" ]] || "$ROOT/build-support/engine-export.sh" "$ENGINE"
if [[ ! -f "$NATIVE/llama-bench.elf" ]]; then
  # shellcheck source=build-support/docker-client.sh
  source "$ROOT/build-support/docker-client.sh"
  docker_cli="$(docker_client cpu_variant_vs_native)" || exit 1
  "$ROOT/build-support/docker-base-image.sh"
  secret=()
  [[ -s /etc/ssl/certs/ca-certificates.crt ]] && secret=(--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt)
  echo "building llama-bench with -march=native (minutes)..."
  DOCKER_BUILDKIT=1 "$docker_cli" build --network host "${secret[@]}" \
    --file "$ROOT/bench/native-engine.Dockerfile" --output "type=local,dest=$NATIVE" "$ROOT/bench"
fi

run() { # $1 label, then the command → prints one line, sets PP/TG (tokens/s of prompt / generation)
  local label="$1" out
  shift
  # The native binary (static, run with the engine's glibc) can crash at exit after printing its
  # results, and ggml then prints a backtrace on stdout: keep only the CSV lines.
  out="$("$@" -m "$MODEL" -p 128 -n 64 -r 3 -t "$THREADS" -o csv 2>/dev/null |
    grep -E '^(build_commit|")' | tr -d '"' || true)"
  read -r PP TG < <(printf '%s\n' "$out" | awk -F, '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $col["n_prompt"] > 0 { pp = $col["avg_ts"] }
    $col["n_gen"] > 0 { tg = $col["avg_ts"] }
    END { print pp, tg }')
  printf '%-34s prompt %8.2f t/s   generation %8.2f t/s\n' "$label" "$PP" "$TG"
}

echo "model: $MODEL, threads: $THREADS, CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
"$ENGINE/llama-server" -v --list-devices 2>&1 | grep -i 'loaded CPU' | sed 's/^/shipped engine: /' || true
run "shipped (Debian, runtime variant)" "$ENGINE/llama-bench"
VAR_PP=$PP VAR_TG=$TG
run "-march=native build" "$ENGINE/lib/llama-server" --library-path "$ENGINE/lib" "$NATIVE/llama-bench.elf"
awk -v a="$VAR_PP" -v b="$PP" -v c="$VAR_TG" -v d="$TG" \
  'BEGIN { printf "ratio variant/native: prompt %.3f, generation %.3f\n", a / b, c / d }'
