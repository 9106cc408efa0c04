"""The compose files in docker/compose/ start the image as written (issue 15, item 2).

The AMD file once had `group_add: [video, render]`, which Docker refuses in this image ("Unable
to find group render"). Here the AMD file's own settings (devices, group_add, security_opt,
environment) drive a container of the universal image, with device nodes made for the test
(character devices with /dev/null's numbers, owned by a gid no image names): the container must
start, and the service user must hold the nodes' gid through the entrypoint's group handling.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from mentator_e2e.harness import DATA_GID, DATA_UID, chown_tree, run_service

pytestmark = pytest.mark.e2e

COMPOSE = Path("docker/compose")
NODE_GID = 4321  # a gid no image has a name for, like a host's "render"


def _service(name: str) -> dict[str, Any]:
    document = yaml.safe_load((COMPOSE / name).read_text(encoding="utf-8"))
    service = document["services"]["mentator"]
    assert isinstance(service, dict)
    return service


def test_every_compose_file_mounts_a_data_folder_and_names_a_built_image() -> None:
    for name in ("cpu.yaml", "nvidia.yaml", "amd.yaml"):
        service = _service(name)
        assert service["image"] in {
            "mentator-llm-service:latest",
            "mentator-llm-service-cpu:latest",
        }
        (volume,) = service["volumes"]
        assert volume.endswith(":/opt/mentator-llm-service/data"), volume
        assert "group_add" not in service, f"{name}: group names do not exist in the image"


def test_amd_compose_settings_start_with_device_nodes(
    docker_client: docker.DockerClient, universal_image: str, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("making device nodes needs root (CI runs as root)")
    service = _service("amd.yaml")
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    devices = []
    for device in service["devices"]:
        inside = device.split(":")[0]
        fake = nodes / inside.strip("/").replace("/", "-")
        os.mknod(fake, 0o660 | stat.S_IFCHR, os.makedev(1, 3))
        os.chown(fake, 0, NODE_GID)
        # /dev/dri is a folder on a real host: give it a render node inside.
        target = f"{inside}/renderD128" if inside == "/dev/dri" else inside
        devices.append(f"{fake}:{target}:rwm")
    data = tmp_path / "data"
    data.mkdir()
    chown_tree(data, DATA_UID, DATA_GID)
    # As compose would: `${NAME:-default}` from an environment that sets none of them.
    environment = {
        name: value
        for name, raw in (service.get("environment") or {}).items()
        if (value := re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(raw)))
    }
    with run_service(
        docker_client,
        universal_image,
        data,
        environment=environment,
        devices=devices,
        security_opt=service.get("security_opt"),
        group_add=service.get("group_add"),
    ) as running:
        running.wait_http()
        output = running.container.exec_run(
            ["sh", "-c", "grep -h '^Groups:' /proc/[0-9]*/status | sort -u"], user="root"
        ).output
        status = output.decode() if isinstance(output, bytes) else ""
        assert str(NODE_GID) in status.split(), f"{status}\n{running.log_block()}"
