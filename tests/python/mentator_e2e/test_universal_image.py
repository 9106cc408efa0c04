"""The universal image (CPU + CUDA 12 + ROCm + Vulkan) on a machine without a GPU, and facing fake
NVIDIA and AMD GPUs: the backend chosen, and the reason for every tier skipped, as the entrypoint
logs them and /state reports them; and the engine's libraries all resolve.

One container at a time (host network, fixed port 19777), each on its own empty data folder.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import docker
import pytest
from mentator_e2e.harness import (
    DATA_GID,
    DATA_UID,
    Service,
    ask_colour,
    chown_tree,
    run_service,
    wait_for,
)

pytestmark = pytest.mark.e2e

ENGINE = "/opt/mentator-llm-service/engine"
FAKE_NVIDIA_SMI = """#!/bin/sh
# A fake nvidia-smi: one GPU with the driver the test asks for.
echo "NVIDIA GeForce RTX 4090, 24564, 1200, {driver}"
"""


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    chown_tree(data, DATA_UID, DATA_GID)
    return data


def _backend(service: Service) -> dict[str, Any]:
    def known() -> dict[str, Any] | None:
        backend = service.get_json("/state").get("backend")
        return dict(backend) if backend else None

    return wait_for("/state backend", known, 120, service.log_block)


def _fake_nvidia(tmp_path: Path, driver: str) -> dict[str, dict[str, str]]:
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(FAKE_NVIDIA_SMI.format(driver=driver), encoding="utf-8")
    fake.chmod(0o755)
    return {str(fake): {"bind": "/usr/local/bin/nvidia-smi", "mode": "ro"}}


def test_no_gpu_runs_on_the_cpu_with_a_reason_for_every_tier(
    docker_client: docker.DockerClient, universal_image: str, tmp_path: Path
) -> None:
    with run_service(docker_client, universal_image, _data(tmp_path)) as service:
        service.wait_http()
        backend = _backend(service)
        assert backend["name"] == "cpu", backend
        skipped = backend["skipped"]
        assert set(skipped) == {"cuda", "rocm", "vulkan"}, backend
        assert "nvidia-smi not found" in skipped["cuda"] and "--gpus=all" in skipped["cuda"]
        assert "no /dev/kfd" in skipped["rocm"]
        assert "no GPU render node" in skipped["vulkan"]
        logs = service.logs()
        assert "Selected backend: cpu (no usable GPU" in logs, logs
        for tier in ("cuda", "rocm", "vulkan"):
            assert f"  {tier} skipped: " in logs, logs
        assert "selected (decided by the container's entrypoint)" in logs
        ask_colour(service, service.get_json("/state/models")["models"][0]["name"])


def test_an_nvidia_driver_older_than_cuda_12_needs_is_skipped_with_the_reason(
    docker_client: docker.DockerClient, universal_image: str, tmp_path: Path
) -> None:
    mounts = _fake_nvidia(tmp_path, "470.256.02")
    with run_service(
        docker_client, universal_image, _data(tmp_path), extra_mounts=mounts
    ) as service:
        service.wait_http()
        backend = _backend(service)
        assert backend["name"] == "cpu", backend
        assert backend["skipped"]["cuda"].startswith(
            "NVIDIA driver 470.256.02 is too old for the bundled CUDA 12 runtime"
            " (needs driver 525 or newer)"
        ), backend
        assert "cuda skipped: NVIDIA driver 470.256.02 is too old" in service.logs()


def test_a_new_enough_driver_reaches_the_cuda_backend_which_needs_the_real_gpu(
    docker_client: docker.DockerClient, universal_image: str, tmp_path: Path
) -> None:
    """Driver 570 meets the floor, so the service asks llama-server to load the CUDA backend;
    without the NVIDIA runtime's libcuda.so.1 (no real GPU here) that load fails, and says so."""
    mounts = _fake_nvidia(tmp_path, "570.86.15")
    with run_service(
        docker_client, universal_image, _data(tmp_path), extra_mounts=mounts
    ) as service:
        service.wait_http()
        backend = _backend(service)
        assert backend["name"] == "cpu", backend
        reason = backend["skipped"]["cuda"]
        assert reason.startswith("CUDA backend failed to load"), reason
        assert "libcuda.so.1" in reason, reason


def test_fake_amd_device_nodes_skip_rocm_with_a_reason(
    docker_client: docker.DockerClient, universal_image: str, tmp_path: Path
) -> None:
    """/dev/kfd, a render node and a KFD topology naming an RX 7900 (gfx1100), all fake: the
    HIP backend cannot reach a real GPU, and Vulkan finds no device on the render node."""
    fake = tmp_path / "fake"
    (fake / "dev" / "dri").mkdir(parents=True)
    (fake / "dev" / "kfd").write_bytes(b"")
    (fake / "dev" / "dri" / "renderD128").write_bytes(b"")
    node = fake / "sys" / "class" / "kfd" / "kfd" / "topology" / "nodes" / "1"
    node.mkdir(parents=True)
    (node / "properties").write_text("gfx_target_version 110000\n", encoding="utf-8")
    mounts = {str(fake): {"bind": "/fake", "mode": "ro"}}
    env = {"MENTATOR_DEV_ROOT": "/fake/dev", "MENTATOR_SYS_ROOT": "/fake/sys"}
    with run_service(
        docker_client, universal_image, _data(tmp_path), extra_mounts=mounts, environment=env
    ) as service:
        service.wait_http()
        backend = _backend(service)
        assert backend["name"] == "cpu", backend
        rocm = backend["skipped"]["rocm"]
        assert rocm.startswith("ROCm backend failed to load"), rocm
        assert backend["skipped"]["vulkan"].startswith("Vulkan backend failed to load"), backend
        assert "rocm skipped: ROCm backend failed to load" in service.logs()


def test_the_engine_and_every_backend_library_resolve(
    docker_client: docker.DockerClient, universal_image: str
) -> None:
    script = (
        f"{ENGINE}/llama-server --version 2>&1 | head -n 1; "
        "ls /usr/lib/x86_64-linux-gnu/ggml/backends0/libggml-cpu-*.so | wc -l; "
        f'for f in {ENGINE}/*/*.so; do echo "== $f"; ldd "$f" | grep \'not found\' || true; done; '
        f"cat {ENGINE}/rocm/supported-gfx.txt; "
        "dpkg -l | awk '$1 == \"ii\" {print $2}' | grep -E '^(libcuda1|libnvidia-)' || true"
    )
    output = docker_client.containers.run(
        universal_image, ["sh", "-c", script], entrypoint=[], remove=True
    ).decode()
    build = re.search(r"build (\d+)", output)
    assert build is not None and int(build.group(1)) >= 11669, output
    assert "\n14\n" in output, output
    libraries = re.findall(r"^== (\S+)$", output, re.MULTILINE)
    assert sorted(Path(lib).name for lib in libraries) == [
        "libggml-cuda.so",
        "libggml-hip.so",
        "libggml-vulkan.so",
    ], output
    unresolved = [line for line in output.splitlines() if "not found" in line]
    assert all("libcuda.so.1" in line for line in unresolved), unresolved  # the host's driver
    assert "gfx1100" in output and "gfx90a" in output, output
    assert "libcuda1" not in output and "libnvidia-" not in output, output


def test_node_runs_for_js_tools(docker_client: docker.DockerClient, universal_image: str) -> None:
    """JS server-side tools need Node.js on the service's PATH (docs/tools.md)."""
    output = docker_client.containers.run(
        universal_image,
        ["sh", "-c", "node -e 'console.log(JSON.stringify({sum: 40 + 2}))'"],
        entrypoint=[],
        remove=True,
        user="10001",
    ).decode()
    assert output.strip() == '{"sum":42}', output


MATH_JS = Path("docs/tools/example-math-js.tool.txt")


def test_js_tool_runs_in_the_universal_image(
    docker_client: docker.DockerClient, universal_image: str, tmp_path: Path
) -> None:
    data = _data(tmp_path)
    tools = data / "tools"
    tools.mkdir()
    shutil.copy(MATH_JS, tools / "calc.tool.txt")
    chown_tree(data, DATA_UID, DATA_GID)
    answer_schema = {"type": "object", "properties": {"result": {"type": "number"}}}
    with run_service(docker_client, universal_image, data) as running:
        running.wait_http()
        model = str(running.get_json("/state/models")["models"][0]["name"])
        response = running.post_json(
            "/prompt",
            {
                "model": model,
                "message": {"user": "Use the calc tool to compute 6 * 7."},
                "durationMsec": 600_000,
                "toolServer": ["calc"],
                "options": {"temperature": 0},
                "format": {"useGrammar": True, "jsonSchema": answer_schema},
            },
            timeout_s=600,
        )
        assert response.status_code == 200, f"{response.text}\n{running.log_block()}"
        result = response.json()["result"]
        assert result.get("usedTools") and set(result["usedTools"]) == {"calc.tool.txt"}, result
