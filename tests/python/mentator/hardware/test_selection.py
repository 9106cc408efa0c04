"""The backend decision table, driven through fake tools, device trees and a fake llama-server."""

from __future__ import annotations

from typing import Any

from mentator.backends.choice import BackendChoice
from mentator.hardware.selection import select_backend


def test_nvidia_present_and_working_picks_cuda(machine: Any) -> None:
    machine.engine_with("cuda", "rocm", "vulkan")
    machine.llama_server()
    machine.nvidia_gpu()
    choice = select_backend(machine.env())
    assert choice.backend == "cuda"
    assert choice.skipped == {}
    assert [d.name for d in choice.devices] == ["NVIDIA GeForce RTX 4090"]
    assert choice.devices[0].total_mb == 24564 and choice.devices[0].used_mb == 1200
    assert "driver 570.86.15" in choice.reason and "CUDA 12" in choice.reason
    assert choice.cpu_variant == "haswell"
    cuda_dir = machine.engine / "cuda"
    assert choice.env["GGML_BACKEND_PATH"] == str(cuda_dir / "libggml-cuda.so")
    assert choice.env["LD_LIBRARY_PATH"].split(":")[:2] == [str(cuda_dir), str(machine.engine)]


def test_nvidia_smi_failing_skips_cuda_with_its_error(machine: Any) -> None:
    machine.engine_with("cuda")
    machine.llama_server()
    machine.nvidia_smi(
        'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver."'
        " >&2\nexit 9\n"
    )
    choice = select_backend(machine.env())
    assert choice.backend == "cpu"
    assert "exit code 9" in choice.skipped["cuda"]
    assert "could not communicate with the NVIDIA driver" in choice.skipped["cuda"]


def test_no_nvidia_smi_says_how_to_pass_the_gpu(machine: Any) -> None:
    machine.engine_with("cuda")
    machine.llama_server()
    choice = select_backend(machine.env())
    assert choice.backend == "cpu"
    assert "nvidia-smi not found" in choice.skipped["cuda"]
    assert "--gpus=all" in choice.skipped["cuda"]


def test_nvidia_smi_hanging_times_out(machine: Any) -> None:
    machine.engine_with("cuda")
    machine.llama_server()
    machine.nvidia_smi("sleep 5\n")
    choice = select_backend(machine.env(timeout_s=0.5))
    assert choice.backend == "cpu"
    assert "timed out after 0.5 s" in choice.skipped["cuda"]


def test_nvidia_ok_but_engine_without_cuda_backend(machine: Any) -> None:
    machine.engine_with()  # CPU-only engine flavour
    machine.llama_server()
    machine.nvidia_gpu()
    choice = select_backend(machine.env())
    assert choice.backend == "cpu"
    reason = choice.skipped["cuda"]
    assert "NVIDIA GPU (NVIDIA GeForce RTX 4090) found" in reason
    assert "libggml-cuda.so is missing" in reason


def test_driver_too_old_for_bundled_cuda(machine: Any) -> None:
    machine.engine_with("cuda", cudart_major=13)
    machine.llama_server()
    machine.nvidia_gpu(driver="550.54.14")
    choice = select_backend(machine.env())
    assert choice.backend == "cpu"
    assert choice.skipped["cuda"].startswith(
        "NVIDIA driver 550.54.14 is too old for the bundled CUDA 13"
    )
    assert "580" in choice.skipped["cuda"]


def test_driver_new_enough_for_cuda_13(machine: Any) -> None:
    machine.engine_with("cuda", cudart_major=13)
    machine.llama_server()
    machine.nvidia_gpu(driver="580.65.06")
    assert select_backend(machine.env()).backend == "cuda"


def test_cuda_library_that_fails_to_load_is_skipped_with_the_engine_output(machine: Any) -> None:
    machine.engine_with("cuda")
    machine.llama_server(loads=())
    machine.nvidia_gpu()
    choice = select_backend(machine.env())
    assert choice.backend == "cpu"
    reason = choice.skipped["cuda"]
    assert reason.startswith("CUDA backend failed to load")
    assert "libcuda-runtime.so: cannot open shared object file" in reason


def test_amd_with_supported_gfx_picks_rocm(machine: Any) -> None:
    machine.engine_with("cuda", "rocm")
    (machine.engine / "rocm" / "supported-gfx.txt").write_text("gfx1030\ngfx1100\ngfx90a\n")
    machine.llama_server()
    machine.amd_gpu(110000)  # gfx1100
    machine.render_node()
    choice = select_backend(machine.env())
    assert choice.backend == "rocm"
    assert "nvidia-smi not found" in choice.skipped["cuda"]
    assert "gfx1100" in choice.reason
    assert choice.devices[0].name == "AMD Radeon RX 7900 XTX"
    assert choice.devices[0].total_mb == 24560 and choice.devices[0].used_mb == 560
    assert choice.env["GGML_BACKEND_PATH"].endswith("/rocm/libggml-hip.so")


def test_amd_with_unsupported_gfx_is_skipped_with_a_hint(machine: Any) -> None:
    machine.engine_with("rocm")
    (machine.engine / "rocm" / "supported-gfx.txt").write_text("gfx1030 gfx1100\n")
    machine.llama_server()
    machine.amd_gpu(100306)  # gfx1036, an APU target the kernels were not built for
    choice = select_backend(machine.env())
    assert choice.backend == "cpu"
    reason = choice.skipped["rocm"]
    assert "gfx1036" in reason and "not supported" in reason
    assert "HSA_OVERRIDE_GFX_VERSION" in reason


def test_hsa_override_makes_an_unsupported_gfx_usable(machine: Any) -> None:
    machine.engine_with("rocm")
    (machine.engine / "rocm" / "supported-gfx.txt").write_text("gfx1030\n")
    machine.llama_server()
    machine.amd_gpu(100306)
    machine.environ["HSA_OVERRIDE_GFX_VERSION"] = "10.3.0"
    choice = select_backend(machine.env())
    assert choice.backend == "rocm"
    assert "HSA_OVERRIDE_GFX_VERSION → gfx1030" in choice.reason


def test_amd_without_supported_list_is_confirmed_by_the_engine(machine: Any) -> None:
    machine.engine_with("rocm")
    machine.llama_server(loads=())
    machine.amd_gpu(90010)  # gfx90a
    choice = select_backend(machine.env())
    assert choice.backend == "cpu"
    assert choice.skipped["rocm"].startswith("ROCm backend failed to load")


def test_kfd_without_gpu_node_falls_back_to_rocminfo(machine: Any) -> None:
    machine.engine_with("rocm")
    machine.llama_server()
    machine.amd_gpu(None)
    machine.rocminfo('echo "  Name:                    gfx1030"\n')
    choice = select_backend(machine.env())
    assert choice.backend == "rocm"
    assert "gfx1030" in choice.reason


def test_vulkan_render_node_picks_vulkan(machine: Any) -> None:
    machine.engine_with("cuda", "rocm", "vulkan")
    machine.llama_server()
    machine.render_node()
    choice = select_backend(machine.env())
    assert choice.backend == "vulkan"
    assert set(choice.skipped) == {"cuda", "rocm"}
    assert "no " in choice.skipped["rocm"] and "kfd" in choice.skipped["rocm"]
    assert choice.devices[0].name == "Intel(R) Arc(tm) A770 Graphics"
    assert "A770" in choice.reason


def test_nothing_gives_cpu_with_a_reason_for_every_gpu_tier(machine: Any) -> None:
    machine.engine_with("cuda", "rocm", "vulkan")
    machine.llama_server()
    choice = select_backend(machine.env())
    assert choice.backend == "cpu"
    assert set(choice.skipped) == {"cuda", "rocm", "vulkan"}
    assert "renderD*" in choice.skipped["vulkan"]
    assert choice.cpu_variant == "haswell"
    assert choice.env == {}
    assert choice.gpu_info() == {
        "type": "cpu",
        "device": None,
        "totalVramMb": None,
        "usedVramMb": None,
    }


def test_missing_engine_still_chooses_cpu_and_says_why(machine: Any) -> None:
    choice = select_backend(machine.env())
    assert choice.backend == "cpu"
    assert "llama-server not found" in choice.reason
    assert choice.cpu_variant is None


def test_to_json_and_fallback_keep_the_reasons() -> None:
    gpu = BackendChoice(
        backend="cuda", reason="NVIDIA GPU", skipped={}, env={"GGML_BACKEND_PATH": "/e/cuda/x.so"}
    )
    cpu = gpu.fallback_to_cpu("cuda engine failed to start: out of memory")
    assert cpu.backend == "cpu" and cpu.env == {} and cpu.devices == []
    assert cpu.to_json() == {
        "backend": "cpu",
        "reason": "fell back to CPU: cuda engine failed to start: out of memory",
        "skipped": {"cuda": "cuda engine failed to start: out of memory"},
        "devices": [],
        "cpuVariant": None,
        "env": {},
        # The one rendering also used by /state:
        "name": "cpu",
        "fallbacks": [],
        "canary": None,
    }
