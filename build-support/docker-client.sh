# shellcheck shell=bash
# Sourced by the build-support scripts: find the Docker client and check that its daemon answers.
# $DOCKER wins; else Debian's /usr/bin/docker (it matches Debian's daemon); else docker on PATH.
# Usage: docker_cli="$(docker_client SCRIPT_NAME)" || exit 1
docker_client() {
  local who="$1" cli
  if [[ -n "${DOCKER:-}" ]]; then
    cli="${DOCKER}"
  elif [[ -x /usr/bin/docker ]]; then
    cli=/usr/bin/docker
  else
    cli="$(command -v docker || true)"
  fi
  if [[ -z "${cli}" ]]; then
    echo "${who}: no docker client found; install Docker or set DOCKER=/path/to/docker" >&2
    return 1
  fi
  if ! "${cli}" info >/dev/null 2>&1; then
    echo "${who}: the Docker daemon is not reachable ('${cli} info' failed); start dockerd" >&2
    return 1
  fi
  printf '%s' "${cli}"
}
