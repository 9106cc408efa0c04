#!/bin/sh
# llama-server / llama-bench of the exported engine (Dockerfile stage engine-cpu-export): runs
# lib/<this name>.elf with the glibc loader and libraries bundled in lib/, so Debian's build
# (glibc 2.43) runs on an older host. The loader is lib/llama-server: the process keeps that name,
# and ggml finds its CPU variants next to it. exec keeps the pid (signals reach the engine).
here="$(dirname "$(readlink -f "$0")")/lib"
exec "${here}/llama-server" --library-path "${here}" "${here}/$(basename "$0").elf" "$@"
