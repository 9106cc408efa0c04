#!/bin/sh
# docker-entrypoint.sh — prepares the data volume, detects the GPU (once, with the service's own
# algorithm), then runs Mentator LLM Service as an unprivileged user.
#
# Steps (the owner's brief, docs in docs/engine.md and the README's Docker section):
#   1. choose the user to run as: PUID/PGID, else the owner of the data folder when it is not
#      root, else mentator (10001) — so a bind-mounted folder owned by any uid just works.
#      Started as a non-root user instead (Kubernetes: runAsUser 10001, deploy/kubernetes/), it
#      runs as that user: no chown, no user switch (PUID/PGID are ignored, with a log line); the
#      data folder must be writable already (fsGroup), and /tmp too (read-only root filesystem:
#      an emptyDir);
#   2. make sure data/ and data/models/ exist and are writable by that user (if not: print the
#      fix and exit 78, EX_CONFIG; no crash-loop of stack traces);
#   3. copy the default models into data/models/ when that folder is empty (never overwrite);
#   4. detect the hardware with the service's own decision (`python -m mentator --detect-hardware`:
#      CUDA → ROCm → Vulkan → CPU, checking the driver, the engine's backend libraries and what
#      llama-server itself can load), log it with the reason for every tier skipped, export
#      LLAMA_CUDA=1 / LLAMA_HIPBLAS=1 to match, and hand the decision to the service
#      (MENTATOR_BACKEND_DECISION) so it does not probe again;
#   5. exec the service with --conf-docker as that user (tini stays PID 1).
#
# Arguments: none → the service; arguments starting with "-" → `python -m mentator ARGS`
# (e.g. --version); anything else → that command, run as the same user.
#
# Environment (the MENTATOR_* ones exist so tests can run this script outside a container):
#   PUID, PGID                 user/group ids to run as (0 = stay root)
#   MENTATOR_ROOT              install root (default /opt/mentator-llm-service)
#   MENTATOR_PYTHON            the service's python (default $MENTATOR_ROOT/app/venv/bin/python)
#   MENTATOR_DEV_ROOT          where to look for kfd and dri (default /dev; the service's probes
#                              read it too, with MENTATOR_SYS_ROOT, MENTATOR_NVIDIA_SMI, ...)
#   MENTATOR_SKIP_PRIVDROP=1   do not change user even when root (tests)
set -eu

root="${MENTATOR_ROOT:-/opt/mentator-llm-service}"
data_dir="${root}/data"
models_dir="${data_dir}/models"
default_models_dir="${root}/default-models"
conf_file="${data_dir}/mentator-llm-service.conf.jsonc"
python="${MENTATOR_PYTHON:-${root}/app/venv/bin/python}"
dev_root="${MENTATOR_DEV_ROOT:-/dev}"
default_uid=10001
default_gid=10001

log() {
  printf '[entrypoint] %s\n' "$*"
}

fail_config() {
  # $* = what is wrong and how to fix it; exit 78 (EX_CONFIG) so the cause is obvious in
  # `docker logs` and the restart policy does not fill the log with stack traces.
  for line in "$@"; do
    printf '[entrypoint] ERROR: %s\n' "${line}" >&2
  done
  exit 78
}

# --- 1. who runs the service ------------------------------------------------------------------
current_uid="$(id -u)"
privdrop=0
if [ "${current_uid}" = "0" ] && [ "${MENTATOR_SKIP_PRIVDROP:-0}" != "1" ]; then
  privdrop=1
fi

mkdir -p "${data_dir}" 2>/dev/null || true
if [ "${privdrop}" = "1" ]; then
  data_uid="$(stat -c '%u' "${data_dir}" 2>/dev/null || echo 0)"
  data_gid="$(stat -c '%g' "${data_dir}" 2>/dev/null || echo 0)"
  if [ -n "${PUID:-}" ]; then
    run_uid="${PUID}"
    run_gid="${PGID:-${PUID}}"
  elif [ "${data_uid}" != "0" ]; then
    run_uid="${data_uid}"
    run_gid="${PGID:-${data_gid}}"
  else
    run_uid="${default_uid}"
    run_gid="${PGID:-${default_gid}}"
  fi
  case "${run_uid}${run_gid}" in
    *[!0-9]*) fail_config "PUID/PGID must be numeric ids (got PUID='${run_uid}', PGID='${run_gid}')." ;;
  esac
  # A data folder that Docker itself created (root-owned and empty) is handed to the user.
  if [ "${data_uid}" = "0" ] && [ "${run_uid}" != "0" ] && [ -z "$(ls -A "${data_dir}" 2>/dev/null)" ]; then
    chown "${run_uid}:${run_gid}" "${data_dir}" 2>/dev/null || true
  fi
else
  # Started as a non-root user (Kubernetes runAsUser, `docker run --user`): it cannot switch
  # users or chown, so it runs as itself; the data folder must already be writable for it
  # (Kubernetes: the pod's securityContext.fsGroup makes the volume group-writable).
  run_uid="${current_uid}"
  run_gid="$(id -g)"
  if [ "${current_uid}" != "0" ] && { [ -n "${PUID:-}" ] || [ -n "${PGID:-}" ]; }; then
    log "PUID/PGID ignored: the container already runs as uid ${run_uid} (not root), which cannot switch users"
  fi
fi

# Supplementary groups: the groups owning the GPU device nodes (AMD: /dev/kfd and /dev/dri/*,
# whose gids differ between hosts and are rarely in the image's /etc/group).
extra_groups="${run_gid}"
for node in "${dev_root}/kfd" "${dev_root}"/dri/*; do
  [ -e "${node}" ] || continue
  gid="$(stat -c '%g' "${node}" 2>/dev/null || true)"
  case ",${extra_groups}," in
    *",${gid},"*) ;;
    *) [ -n "${gid}" ] && extra_groups="${extra_groups},${gid}" ;;
  esac
done

# as_user CMD... — run a command as the service user (directly when no privilege drop).
as_user() {
  if [ "${privdrop}" = "1" ] && [ "${run_uid}" != "0" ]; then
    HOME=/tmp setpriv --reuid="${run_uid}" --regid="${run_gid}" --groups="${extra_groups}" \
      --inh-caps=-all -- "$@"
  else
    "$@"
  fi
}

if [ "${privdrop}" = "0" ] && [ "${current_uid}" != "0" ]; then
  log "running as uid ${run_uid}, gid ${run_gid}, groups $(id -G | tr ' ' ',') (started as non-root)"
  # Without the privilege drop the extra groups above cannot be added: say which are missing.
  for gid in $(printf '%s' "${extra_groups}" | tr ',' ' '); do
    case " $(id -G) " in
      *" ${gid} "*) ;;
      *) log "WARNING: a GPU device node belongs to gid ${gid}, which this process lacks; add it to the supplementary groups (Kubernetes: securityContext.supplementalGroups, docker: --group-add ${gid})" ;;
    esac
  done
else
  log "running as uid ${run_uid}, gid ${run_gid}, groups ${extra_groups}"
fi

# --- 2. a writable data folder ----------------------------------------------------------------
fix_hint="Fix: mount a writable folder at ${data_dir} owned by the user the service runs as (uid ${run_uid}), e.g. 'sudo chown -R ${run_uid}:${run_gid} /path/to/data', or pass -e PUID=<uid> -e PGID=<gid> of the folder's owner; do not mount it read-only (:ro)."
if [ "${privdrop}" = "0" ] && [ "${current_uid}" != "0" ]; then
  fix_hint="Fix: this container runs as uid ${run_uid} (not root), so the data folder must already be writable for it: on Kubernetes set the pod's securityContext.fsGroup to ${run_gid} (the volume is then made group-writable), with docker chown the host folder to ${run_uid}:${run_gid}; do not mount it read-only."
fi
if [ ! -d "${data_dir}" ]; then
  fail_config "the data folder ${data_dir} does not exist and cannot be created." "${fix_hint}"
fi
probe="${data_dir}/.mentator-write-test.$$"
# shellcheck disable=SC2016  # $1 is expanded by the inner sh, on purpose
if ! as_user sh -c 'touch "$1" && rm -f "$1"' sh "${probe}" 2>/dev/null; then
  fail_config "the data folder ${data_dir} is not writable by uid ${run_uid} (read-only mount or wrong owner)." "${fix_hint}"
fi
if [ ! -d "${models_dir}" ]; then
  as_user mkdir -p "${models_dir}" || fail_config "cannot create ${models_dir}." "${fix_hint}"
  log "created ${models_dir}"
fi
# The tool folders (reference §7: the original's entrypoint creates them too); optional, so a
# failure is only a warning (the service then logs that the folder cannot be read).
for tools_dir in "${data_dir}/tools" "${data_dir}/toolsenv"; do
  if [ ! -d "${tools_dir}" ]; then
    if as_user mkdir -p "${tools_dir}"; then log "created ${tools_dir}"; else log "WARNING: could not create ${tools_dir}"; fi
  fi
done

# --- 3. default models ------------------------------------------------------------------------
if [ -z "$(ls -A "${models_dir}" 2>/dev/null)" ]; then
  copied=0
  for model in "${default_models_dir}"/*.gguf; do
    [ -f "${model}" ] || continue
    target="${models_dir}/$(basename "${model}")"
    # cp -n: never overwrite, even if a file appeared meanwhile
    if as_user cp -n "${model}" "${target}"; then
      log "copied default model $(basename "${model}") into ${models_dir}"
      copied=$((copied + 1))
    else
      log "WARNING: could not copy default model ${model} into ${models_dir}"
    fi
  done
  [ "${copied}" -gt 0 ] || log "no default models to copy (${default_models_dir} has no *.gguf)"
else
  log "${models_dir} is not empty: default models not copied"
fi

# --- 4. hardware: the service's decision, made once -------------------------------------------
# One algorithm (the service's): this script only logs the decision and passes it on.
# A read-only root filesystem needs a writable /tmp (an emptyDir on Kubernetes): say so.
explained="$(mktemp 2>/dev/null)" ||
  fail_config "cannot create a temporary file in ${TMPDIR:-/tmp}: mount a writable folder there (read-only root filesystem: an emptyDir at /tmp on Kubernetes, --tmpfs /tmp with docker --read-only)."
if [ -x "${python}" ] && decision="$(as_user "${python}" -m mentator --detect-hardware --explain 2>"${explained}")"; then
  while IFS= read -r line; do log "${line}"; done <"${explained}"
  export MENTATOR_BACKEND_DECISION="${decision}"
  # The original's LLAMA_CUDA=1 / LLAMA_HIPBLAS=1: the service reads the decision (no JSON
  # parsing here) and names the variable of its backend's catalog row, or prints nothing.
  env_flag="$(as_user "${python}" -m mentator --detect-hardware --env-flag)" || env_flag=""
  case "${env_flag}" in
    "" | *[!A-Z0-9_]*) ;;
    *) export "${env_flag}=1" ;;
  esac
else
  log "WARNING: '${python} -m mentator --detect-hardware' failed; the service detects the hardware at start"
  while IFS= read -r line; do log "  ${line}"; done <"${explained}"
fi
rm -f "${explained}"

# --- 5. run -----------------------------------------------------------------------------------
if [ "$#" -eq 0 ]; then
  set -- "${python}" -m mentator --conf-docker "${conf_file}"
else
  case "$1" in
    -*) set -- "${python}" -m mentator "$@" ;;
  esac
fi
log "starting: $*"
cd "${root}"
if [ "${privdrop}" = "1" ] && [ "${run_uid}" != "0" ]; then
  HOME=/tmp exec setpriv --reuid="${run_uid}" --regid="${run_gid}" --groups="${extra_groups}" \
    --inh-caps=-all -- "$@"
fi
exec "$@"
