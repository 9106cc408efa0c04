"""Fixtures for the end-to-end tests: a Docker daemon and the CPU image.

No daemon, or no image → skip with the reason locally, fail with CI=true (CI must never go green
without having run them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException, ImageNotFound
from mentator_e2e.harness import CPU_REPOSITORY, UNIVERSAL_REPOSITORY, missing

from mentator_testing.engine_lock import engine_lock

# Written by Pants next to the tests when runtime_package_dependencies built the images.
CPU_DOCKER_INFO = Path("docker/mentator-cpu.docker-info.json")
UNIVERSAL_DOCKER_INFO = Path("docker/mentator.docker-info.json")
HAPROXY_DOCKER_INFO = Path("deploy.compose/haproxy.docker-info.json")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as err:
        missing(f"no Docker daemon answers ({err}); start dockerd or set DOCKER_HOST")
        raise AssertionError("unreachable") from err
    # Its containers run engines: no other test's engine computes beside them.
    with engine_lock():
        yield client
    client.close()


def _image_from_docker_info(docker_info: Path) -> str | None:
    if not docker_info.is_file():
        return None
    info = json.loads(docker_info.read_text())
    image_id = info.get("image_id")
    return str(image_id) if image_id else None


@pytest.fixture(scope="session")
def version() -> str:
    value = os.environ.get("MENTATOR_VERSION", "")
    if not value:
        pytest.fail("MENTATOR_VERSION is not set (tests/python/mentator_e2e/BUILD passes it)")
    return value


def _image(
    client: docker.DockerClient, override: str, info: Path, repository: str, target: str
) -> str:
    reference = os.environ.get(override) or _image_from_docker_info(info) or f"{repository}:latest"
    try:
        image = client.images.get(reference)
    except ImageNotFound:
        missing(
            f"the image {reference} does not exist; build it with "
            f"'./pants package {target}' (./pants test builds it for these tests)"
        )
        raise
    return str(image.id)


@pytest.fixture(scope="session")
def cpu_image(docker_client: docker.DockerClient) -> str:
    """The CPU image id to test: $MENTATOR_E2E_IMAGE, the one Pants just built, or :latest."""
    return _image(
        docker_client, "MENTATOR_E2E_IMAGE", CPU_DOCKER_INFO, CPU_REPOSITORY, "docker:mentator-cpu"
    )


@pytest.fixture(scope="session")
def universal_image(docker_client: docker.DockerClient) -> str:
    """The universal image id: $MENTATOR_E2E_UNIVERSAL_IMAGE, the one Pants built, or :latest."""
    return _image(
        docker_client,
        "MENTATOR_E2E_UNIVERSAL_IMAGE",
        UNIVERSAL_DOCKER_INFO,
        UNIVERSAL_REPOSITORY,
        "docker:mentator",
    )


@pytest.fixture(scope="session")
def haproxy_image(docker_client: docker.DockerClient) -> str:
    """The HAProxy image of deploy/compose/: $MENTATOR_E2E_HAPROXY_IMAGE, Pants' build, :latest."""
    return _image(
        docker_client,
        "MENTATOR_E2E_HAPROXY_IMAGE",
        HAPROXY_DOCKER_INFO,
        "mentator-haproxy",
        "deploy/compose:haproxy",
    )


LAVAPIPE_DOCKER_INFO = Path("docker/lavapipe/mentator-lavapipe-test.docker-info.json")


@pytest.fixture(scope="session")
def lavapipe_image(docker_client: docker.DockerClient) -> str:
    """The lavapipe TEST image (docker/lavapipe/): $MENTATOR_E2E_LAVAPIPE_IMAGE, the one Pants
    built, or :latest."""
    return _image(
        docker_client,
        "MENTATOR_E2E_LAVAPIPE_IMAGE",
        LAVAPIPE_DOCKER_INFO,
        "mentator-llm-service-lavapipe-test",
        "docker/lavapipe:mentator-lavapipe-test",
    )
