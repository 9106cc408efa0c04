"""Push a built image to Docker Hub or another registry with the Docker SDK.

Destination: `[REGISTRY/][NAMESPACE/]REPOSITORY:TAG` for each tag (`latest` and the version).
Docker Hub needs a NAMESPACE (the account name); a private registry (`--registry HOST[:PORT]`)
may go without one. Credentials are Docker's own (`docker login`, ~/.docker/config.json).

Why not `./pants publish`: the push happens here so that the same code runs in the end-to-end test
(tests/python/mentator_e2e/test_publish.py), which runs under Pants and cannot start a second
Pants. The Pants route (`./pants publish`, registries in pants.toml) is documented in
docs/publish.md and checked by build-support/e2e-publish.sh.

Each push is checked: errors arrive inside the push's progress stream (the SDK does not raise on
them), and afterwards the registry is asked for the manifest digest of what it now holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import docker
from docker.errors import APIError
from docker.models.images import Image

ENV_PUBLISH = "MENTATOR_PUBLISH"
ENV_REGISTRY = "MENTATOR_REGISTRY"
ENV_NAMESPACE = "MENTATOR_NAMESPACE"

_REGISTRY_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NAMESPACE_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


class PublishError(Exception):
    """The image could not be pushed; the message says why and how to fix it."""


@dataclass(frozen=True)
class Destination:
    registry: str | None
    namespace: str | None

    def repository(self, name: str) -> str:
        parts = [part for part in (self.registry, self.namespace, name) if part]
        return "/".join(parts)


@dataclass(frozen=True)
class Pushed:
    reference: str
    digest: str


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def publish_requested(flag: bool, environ: Mapping[str, str]) -> bool:
    """`--publish`, or MENTATOR_PUBLISH=1/true/yes/on."""
    return flag or truthy(environ.get(ENV_PUBLISH))


def destination(
    registry: str | None, namespace: str | None, environ: Mapping[str, str]
) -> Destination:
    """Validate the destination (flags over MENTATOR_REGISTRY / MENTATOR_NAMESPACE)."""
    registry = registry or environ.get(ENV_REGISTRY) or None
    namespace = namespace or environ.get(ENV_NAMESPACE) or None
    if registry is not None and not _REGISTRY_RE.match(registry):
        raise PublishError(
            f"--registry '{registry}' is not HOST[:PORT] (e.g. 127.0.0.1:5000 or "
            "registry.example.org); leave it out to publish to Docker Hub."
        )
    if namespace is not None and not _NAMESPACE_RE.match(namespace):
        raise PublishError(
            f"--namespace '{namespace}' is not a valid repository path (lower-case letters, "
            "digits, '.', '_', '-', separated by '/')."
        )
    if registry is None and namespace is None:
        raise PublishError(
            "publishing to Docker Hub needs your account name: pass --namespace NAME (or set "
            f"{ENV_NAMESPACE}); for another registry pass --registry HOST[:PORT]."
        )
    return Destination(registry=registry, namespace=namespace)


def _push_stream_error(chunks: Iterable[dict[str, Any]]) -> tuple[str | None, str | None]:
    """(error, digest) from the progress stream of one push."""
    digest: str | None = None
    for chunk in chunks:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") if "errorDetail" in chunk else None
            return str(chunk.get("error") or detail), digest
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = str(aux["Digest"])
    return None, digest


def push_image(
    client: docker.DockerClient,
    image: Image,
    name: str,
    tags: Iterable[str],
    where: Destination,
) -> list[Pushed]:
    """Tag `image` as `where.repository(name):tag` for each tag and push it; verified."""
    repository = where.repository(name)
    tags = list(tags)
    bad = [tag for tag in tags if not _TAG_RE.match(tag)]
    if bad:
        raise PublishError(
            f"not valid Docker tags: {', '.join(bad)} (letters, digits, '_', '.', '-'; at most "
            "128); fix MENTATOR_VERSION in build-support/prelude.py."
        )
    pushed: list[Pushed] = []
    for tag in tags:
        reference = f"{repository}:{tag}"
        if not image.tag(repository, tag):
            raise PublishError(f"could not tag {image.short_id} as {reference}")
        print(f"[publish] pushing {reference}", flush=True)
        try:
            error, digest = _push_stream_error(
                client.images.push(repository, tag=tag, stream=True, decode=True)
            )
        except APIError as err:
            error, digest = str(err), None
        if error is not None:
            raise PublishError(
                f"pushing {reference} failed: {error}\n  Fix: run 'docker login"
                f"{' ' + where.registry if where.registry else ''}' with an account allowed to "
                "push there, and check that the registry is reachable."
            )
        try:
            remote = client.images.get_registry_data(reference).id
        except APIError as err:
            raise PublishError(
                f"pushed {reference}, but the registry cannot show it: {err}"
            ) from err
        if digest is not None and remote != digest:
            raise PublishError(
                f"the registry holds {remote} for {reference}, but the push reported {digest}."
            )
        print(f"[publish] {reference} → {remote}", flush=True)
        pushed.append(Pushed(reference=reference, digest=remote))
    return pushed
