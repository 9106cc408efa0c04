#!/bin/sh
# roll.sh — restart the replicas of deploy/compose/compose.yaml one at a time, as an upgrade
# does: `docker stop` (SIGTERM: the replica drains), `docker start`, then wait until the replica
# answers /health 200 (HAProxy takes it back after two good checks) before the next one.
# Usage: deploy/compose/roll.sh [compose project options...], e.g. `-p myproject`.
set -eu

compose_file="$(dirname "$0")/compose.yaml"
for replica in mentator-1 mentator-2 mentator-3; do
  printf '[roll] %s: stop (drain)\n' "${replica}"
  docker compose -f "${compose_file}" "$@" stop --timeout 30 "${replica}"
  printf '[roll] %s: start\n' "${replica}"
  docker compose -f "${compose_file}" "$@" start "${replica}"
  tries=0
  until docker compose -f "${compose_file}" "$@" exec -T "${replica}" \
    curl -fsS -o /dev/null http://127.0.0.1:19777/health 2>/dev/null; do
    tries=$((tries + 1))
    if [ "${tries}" -ge 300 ]; then
      printf '[roll] %s: not ready after 300 s; stopping the roll\n' "${replica}" >&2
      exit 1
    fi
    sleep 1
  done
  # Two health checks at 1 s: HAProxy has it UP again.
  sleep 3
  printf '[roll] %s: ready\n' "${replica}"
done
