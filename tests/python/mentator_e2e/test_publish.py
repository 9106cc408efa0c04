"""Publishing: the build program's push path into a real, local registry, and back.

A throw-away registry (Debian's `docker-registry`, i.e. the CNCF distribution server) listens on
127.0.0.1:5000 with its storage in tmp; the daemon treats 127.0.0.0/8 as an insecure (plain
HTTP) registry by default. Nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from docker.errors import ImageNotFound
from mentator_e2e.harness import CPU_REPOSITORY, missing, port_is_free

from mentator_build.packaging import Flavour, check_tags, image_report
from mentator_build.publish import Destination, push_image

pytestmark = pytest.mark.e2e

REGISTRY = "127.0.0.1:5000"
NAMESPACE = "mentator-e2e"
REGISTRY_CANDIDATES = ("/usr/bin/docker-registry", "/usr/local/bin/registry", "/usr/bin/registry")

REGISTRY_CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: {addr}
"""


def _registry_binary() -> str | None:
    explicit = os.environ.get("MENTATOR_DOCKER_REGISTRY_BIN")
    candidates = (explicit,) if explicit else REGISTRY_CANDIDATES
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None) or shutil.which(
        "docker-registry"
    )


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    binary = _registry_binary()
    if binary is None:
        missing(
            "no registry server: install Debian's 'docker-registry' package "
            "(apt-get install -y docker-registry) or set MENTATOR_DOCKER_REGISTRY_BIN"
        )
    assert binary is not None
    if not port_is_free(5000):
        pytest.fail(f"{REGISTRY} is taken by another process; stop it to run this test")
    config = tmp_path / "registry.yml"
    config.write_text(REGISTRY_CONFIG.format(root=tmp_path / "storage", addr=REGISTRY))
    log = (tmp_path / "registry.log").open("w")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{REGISTRY}/v2/", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"the registry did not start:\n{(tmp_path / 'registry.log').read_text()}"
                )
            time.sleep(0.5)
        yield REGISTRY
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_build_program_sees_both_tags_and_reports_layers(
    docker_client: docker.DockerClient, cpu_image: str, version: str
) -> None:
    image = check_tags(docker_client, Flavour.CPU, version)
    assert image.id == cpu_image, "the tags do not point at the image under test"
    report = image_report(image)
    assert report.size > 0
    assert len(report.largest_layers) == 5
    sizes = [layer.size for layer in report.largest_layers]
    assert sizes == sorted(sizes, reverse=True)


def test_push_to_a_registry_and_pull_back(
    docker_client: docker.DockerClient, cpu_image: str, version: str, registry: str
) -> None:
    image = docker_client.images.get(cpu_image)
    where = Destination(registry=registry, namespace=NAMESPACE)
    repository = where.repository(CPU_REPOSITORY)
    try:
        pushed = push_image(docker_client, image, CPU_REPOSITORY, ["latest", version], where)
        assert [p.reference for p in pushed] == [f"{repository}:latest", f"{repository}:{version}"]
        assert len({p.digest for p in pushed}) == 1, pushed

        # the registry lists both tags
        tags = httpx.get(f"http://{registry}/v2/{NAMESPACE}/{CPU_REPOSITORY}/tags/list").json()
        assert sorted(tags["tags"]) == sorted(["latest", version])

        # drop the registry-tagged copies, pull one back: the very same image
        for reference in (p.reference for p in pushed):
            docker_client.images.remove(reference)
        with pytest.raises(ImageNotFound):
            docker_client.images.get(f"{repository}:latest")
        pulled = docker_client.images.pull(repository, tag="latest")
        assert pulled.id == cpu_image
    finally:
        for tag in ("latest", version):
            with contextlib.suppress(ImageNotFound):
                docker_client.images.remove(f"{repository}:{tag}")
    # the local tags the build made are untouched
    assert docker_client.images.get(f"{CPU_REPOSITORY}:latest").id == cpu_image
