#!/usr/bin/env bash
# End-to-end check of `./pants publish` (docs/publish.md): start Debian's `docker-registry` on
# 127.0.0.1:5000 (pants.toml's default registry "local"), `./pants publish docker:mentator-cpu`,
# delete the pushed tags locally, pull them back and check that the image id is the one built.
# Runs outside `./pants test` (a test under Pants cannot start a second Pants); .ci/run calls it.
# Needs: a Docker daemon, docker-registry (apt-get install docker-registry), port 5000 free.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

registry_bin="${MENTATOR_DOCKER_REGISTRY_BIN:-$(command -v docker-registry || true)}"
[[ -x "${registry_bin}" ]] || {
  echo "e2e-publish: no docker-registry; apt-get install -y docker-registry" >&2
  exit 1
}
address="127.0.0.1:5000"
repository="mentator-llm-service-cpu"
version="$(sed -n 's/^MENTATOR_VERSION *= *"\(.*\)"/\1/p' build-support/prelude.py | head -1)"

work="$(mktemp -d)"
cat >"${work}/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: ${work}/storage
  delete:
    enabled: true
http:
  addr: ${address}
YAML
"${registry_bin}" serve "${work}/registry.yml" >"${work}/registry.log" 2>&1 &
registry_pid=$!
cleanup() {
  kill "${registry_pid}" 2>/dev/null || true
  wait "${registry_pid}" 2>/dev/null || true
  for tag in latest ${version:+"${version}"}; do
    docker rmi "${address}/${repository}:${tag}" >/dev/null 2>&1 || true
  done
  rm -rf "${work}"
}
trap cleanup EXIT
for _ in $(seq 60); do
  curl -fsS "http://${address}/v2/" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "http://${address}/v2/" >/dev/null || {
  cat "${work}/registry.log" >&2
  exit 1
}

echo "== ./pants publish docker:mentator-cpu (registry ${address})"
./pants --no-pantsd publish docker:mentator-cpu
built="$(docker image inspect --format '{{.Id}}' "${address}/${repository}:latest")"
plain="$(docker image inspect --format '{{.Id}}' "${repository}:latest")"
[[ "${plain}" == "${built}" ]] || {
  echo "e2e-publish: the plain local tag ${repository}:latest is not the published image" >&2
  exit 1
}

tags="$(curl -fsS "http://${address}/v2/${repository}/tags/list")"
echo "registry holds: ${tags}"
for tag in latest ${version:+"${version}"}; do
  grep -q "\"${tag}\"" <<<"${tags}" || {
    echo "e2e-publish: tag ${tag} missing in the registry" >&2
    exit 1
  }
done

echo "== delete the pushed tags locally, pull back"
for tag in latest ${version:+"${version}"}; do
  docker rmi "${address}/${repository}:${tag}" >/dev/null
done
if docker image inspect "${address}/${repository}:latest" >/dev/null 2>&1; then
  echo "e2e-publish: the local tag survived the delete" >&2
  exit 1
fi
docker pull -q "${address}/${repository}:latest" >/dev/null
pulled="$(docker image inspect --format '{{.Id}}' "${address}/${repository}:latest")"
echo "built:  ${built}"
echo "pulled: ${pulled}"
[[ "${built}" == "${pulled}" ]] || {
  echo "e2e-publish: the pulled image is not the one built" >&2
  exit 1
}
echo "e2e-publish: OK (pushed, deleted, pulled back the same image id)"
