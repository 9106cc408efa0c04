#!/bin/sh
# roll.sh — restart the replicas of deploy/compose/compose.yaml one at a time, as an upgrade
# does: `docker stop` (SIGTERM, then 30 s before SIGKILL: the replica drains), `docker start`,
# then wait until HAProxy has the replica UP again before the next one, so that at most one
# replica is out at a time. HAProxy's own view decides, read from its stats page as CSV.
# Usage: deploy/compose/roll.sh [CONTAINER...]    (default: mentator-1 mentator-2 mentator-3;
#        each name is also the replica's server name in haproxy/haproxy.cfg)
# Env:   MENTATOR_HAPROXY_STATS  HAProxy's stats page (default http://127.0.0.1:8404/)
#        MENTATOR_ROLL_READY_S   how long a replica may take to be UP again (default 300)
# Needs: docker, curl.
set -eu

stats="${MENTATOR_HAPROXY_STATS:-http://127.0.0.1:8404/}"
ready_s="${MENTATOR_ROLL_READY_S:-300}"
[ "$#" -gt 0 ] || set -- mentator-1 mentator-2 mentator-3

say() {
  printf '[roll] %s %s\n' "$(date -u +%H:%M:%S)" "$*"
}

# The replica's state in HAProxy's backend "mentator": UP, DOWN, "DOWN 1/2" (going up), ...
# (field 18 of the CSV); empty when HAProxy does not answer.
haproxy_status() {
  curl -fsS --max-time 5 "${stats};csv" 2>/dev/null |
    awk -F, -v name="$1" '$1 == "mentator" && $2 == name { print $18 }'
}

# wait_until NAME WANT SECONDS — until HAProxy's status of NAME is (UP) or is not (!UP) UP.
wait_until() {
  waited=0
  while :; do
    state="$(haproxy_status "$1")"
    case "$2:${state}" in
      UP:UP) return 0 ;;
      !UP:UP | UP:*) ;;
      !UP:?*) return 0 ;;
    esac
    if [ "${waited}" -ge "$3" ]; then
      say "$1: HAProxy says '${state:-nothing}' after ${waited} s (waited for ${2}); stopping the roll" >&2
      docker logs --tail 20 "$1" >&2 || true
      exit 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

for replica in "$@"; do
  wait_until "${replica}" UP "${ready_s}"
  say "${replica}: stop (SIGTERM, drain)"
  docker stop --time 30 "${replica}" >/dev/null
  # HAProxy saw it go (a failed check); otherwise a stale UP would let the next one go too.
  wait_until "${replica}" '!UP' 30
  say "${replica}: stopped; start"
  docker start "${replica}" >/dev/null
  wait_until "${replica}" UP "${ready_s}"
  say "${replica}: UP again"
done
say "all replicas restarted"
