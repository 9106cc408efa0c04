#!/usr/bin/env bash
# Benchmark (prints, never asserts): llama-bench tokens/s of the shipped CPU engine, where ggml
# picks the best libggml-cpu-<variant>.so at run time, vs a -march=native build of the same
# llama.cpp source (Dockerfile stage engine-cpu-native, built only by this script), on SmolLM2.
#
#   bench/cpu_variant_vs_native.sh [MODEL]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL="${1:-${MENTATOR_TEST_MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}}"
ENGINE="${MENTATOR_ENGINE_DIR:-$ROOT/.engine/cpu}"
NATIVE="$ROOT/.engine/cpu-native"
THREADS="${THREADS:-$(nproc)}"

[[ -x "$ENGINE/llama-bench" ]] || "$ROOT/build-support/engine-export.sh" "$ENGINE"
if [[ ! -x "$NATIVE/llama-bench" ]]; then
  ENGINE_TARGET=engine-cpu-native-export "$ROOT/build-support/engine-export.sh" "$NATIVE"
fi

run() { # $1 label, $2 engine dir → prints one line, sets PP/TG (tokens/s of prompt / generation)
  local out
  out="$("$2/llama-bench" -m "$MODEL" -p 128 -n 64 -r 3 -t "$THREADS" -o csv 2>/dev/null | tr -d '"')"
  read -r PP TG < <(printf '%s\n' "$out" | awk -F, '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $col["n_prompt"] > 0 { pp = $col["avg_ts"] }
    $col["n_gen"] > 0 { tg = $col["avg_ts"] }
    END { print pp, tg }')
  printf '%-28s prompt %8.2f t/s   generation %8.2f t/s\n' "$1" "$PP" "$TG"
}

echo "model: $MODEL, threads: $THREADS, CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
"$ENGINE/llama-server" --list-devices 2>&1 | grep -iE 'cpu|load' | sed 's/^/shipped engine: /' || true
run "shipped (runtime variant)" "$ENGINE"
VAR_PP=$PP VAR_TG=$TG
run "-march=native build" "$NATIVE"
awk -v a="$VAR_PP" -v b="$PP" -v c="$VAR_TG" -v d="$TG" \
  'BEGIN { printf "ratio variant/native: prompt %.3f, generation %.3f\n", a / b, c / d }'
