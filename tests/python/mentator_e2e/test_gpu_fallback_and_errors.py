"""The CPU image facing a (fake) NVIDIA GPU, and a read-only data folder.

One container at a time (host network, fixed port 19777), each on its own empty data folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import pytest
from mentator_e2e.harness import DATA_GID, DATA_UID, ask_colour, chown_tree, run_service, wait_for

pytestmark = pytest.mark.e2e

FAKE_NVIDIA_SMI = r"""#!/bin/sh
# A fake nvidia-smi: one NVIDIA GPU, answering the two queries the image makes.
case "$*" in
  *memory.used*) echo "NVIDIA GeForce RTX 4090, 24564, 1200, 570.86.15" ;;
  *--query-gpu*) echo "NVIDIA GeForce RTX 4090, 570.86.15, 24564 MiB" ;;
  *) echo "GPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-00000000-0000-0000-0000-000000000000)" ;;
esac
exit 0
"""


def test_fake_nvidia_gpu_falls_back_to_cpu(
    docker_client: docker.DockerClient,
    cpu_image: str,
    tmp_path: Path,
) -> None:
    """nvidia-smi reports a GPU, but the CPU image has no CUDA backend: CPU, with the reason."""
    data = tmp_path / "data"
    data.mkdir()
    chown_tree(data, DATA_UID, DATA_GID)
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(FAKE_NVIDIA_SMI, encoding="utf-8")
    fake.chmod(0o755)
    mounts = {str(fake): {"bind": "/usr/local/bin/nvidia-smi", "mode": "ro"}}

    with run_service(docker_client, cpu_image, data, extra_mounts=mounts) as gpu_service:
        gpu_service.wait_http()
        logs = gpu_service.logs()
        # One decision per container start, the service's: the entrypoint logs it with the
        # reason for every skipped tier, and the service takes it over instead of probing again.
        assert "Selected backend: cpu" in logs, logs
        assert "cuda skipped: NVIDIA GPU (NVIDIA GeForce RTX 4090) found" in logs, logs

        def backend_known() -> dict[str, Any] | None:
            backend = gpu_service.get_json("/state").get("backend")
            return dict(backend) if backend else None

        backend = wait_for("/state backend", backend_known, 60, gpu_service.log_block)
        assert backend["name"] == "cpu", backend
        reason = str(backend["skipped"].get("cuda", ""))
        assert "NVIDIA GPU" in reason, backend
        assert "no CUDA backend" in reason and "built without it" in reason, reason
        assert "selected (decided by the container's entrypoint)" in gpu_service.logs()

        models = gpu_service.get_json("/state/models")["models"]
        ask_colour(gpu_service, models[0]["name"])


def test_read_only_data_folder_stops_with_a_clear_error(
    docker_client: docker.DockerClient, cpu_image: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    chown_tree(data, DATA_UID, DATA_GID)
    with run_service(docker_client, cpu_image, data, read_only=True) as ro_service:
        code = ro_service.wait_exit(timeout_s=60)
        logs = ro_service.logs()
        assert code == 78, f"exit code {code}\n{logs}"
        assert "not writable" in logs and "read-only" in logs, logs
        assert "Fix:" in logs
        assert "Traceback" not in logs
        ro_service.container.reload()
        assert ro_service.container.attrs["RestartCount"] == 0
    assert list(data.iterdir()) == [], "a read-only folder got files"
