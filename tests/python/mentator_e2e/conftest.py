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
from mentator_e2e.harness import CPU_REPOSITORY, missing

# Written by Pants next to the tests when runtime_package_dependencies built the image.
DOCKER_INFO = Path("docker/mentator-cpu.docker-info.json")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as err:
        missing(f"no Docker daemon answers ({err}); start dockerd or set DOCKER_HOST")
        raise AssertionError("unreachable") from err
    yield client
    client.close()


def _image_from_docker_info() -> str | None:
    if not DOCKER_INFO.is_file():
        return None
    info = json.loads(DOCKER_INFO.read_text())
    image_id = info.get("image_id")
    return str(image_id) if image_id else None


@pytest.fixture(scope="session")
def version() -> str:
    value = os.environ.get("MENTATOR_VERSION", "")
    if not value:
        pytest.fail("MENTATOR_VERSION is not set (tests/python/mentator_e2e/BUILD passes it)")
    return value


@pytest.fixture(scope="session")
def cpu_image(docker_client: docker.DockerClient) -> str:
    """The image id to test: $MENTATOR_E2E_IMAGE, the one Pants just built, or :latest."""
    reference = (
        os.environ.get("MENTATOR_E2E_IMAGE")
        or _image_from_docker_info()
        or f"{CPU_REPOSITORY}:latest"
    )
    try:
        image = docker_client.images.get(reference)
    except ImageNotFound:
        missing(
            f"the image {reference} does not exist; build it with "
            "'./pants package docker:mentator-cpu' (./pants test builds it for these tests)"
        )
        raise
    return str(image.id)
