"""Image numbers: size and largest layers per flavour, start-up times, Python-change rebuild time.

    ./pants run bench/image_stats.py                   # everything (rebuilds docker:mentator-cpu)
    ./pants run bench/image_stats.py -- --no-rebuild   # sizes and start-up only
    ./pants run bench/image_stats.py -- --no-compressed  # skip `docker save | gzip` (minutes)

Sizes per flavour: unpacked (what `docker images` shows), unpacked without the default-models
layer, and compressed: the bytes of `docker save | gzip` (level 6, gzip's default).

Prints, never asserts. Start-up is measured on the CPU image with host networking (port 19777
must be free) and an empty data folder, split into:
  start → HTTP answers      docker run … until GET /state/version is 200 (no model involved)
  start → /health ready     the first model scan and the backend choice are done
  start → first answer      the first /prompt finished: includes loading the model
The rebuild appends one comment line to src/python/mentator/version.py, runs
`./pants package docker:mentator-cpu`, restores the file byte for byte (and its mtime), and
packages again so the tags point at the unchanged image.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import docker
import httpx
from docker.errors import ImageNotFound, NotFound
from docker.models.images import Image

from mentator_build.packaging import (
    Flavour,
    format_report,
    image_report,
    package_command,
    pants_environment,
    repo_root_from,
    run_pants,
)

URL = "http://127.0.0.1:19777"
DATA = "/opt/mentator-llm-service/data"
TOUCHED = Path("src/python/mentator/version.py")
WAIT_S = 300.0


def gzip_size(image: Image) -> int:
    """Bytes of `docker save IMAGE | gzip` (gzip's default level 6), streamed."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip container
    total = 0
    for chunk in image.save(chunk_size=1 << 20):
        total += len(compressor.compress(chunk))
    return total + len(compressor.flush())


def model_layer_size(image: Image) -> int:
    return sum(
        int(entry.get("Size") or 0)
        for entry in image.history()
        if "/models/ /opt/mentator-llm-service/default-models/" in str(entry.get("CreatedBy"))
    )


def sizes(client: docker.DockerClient, compressed: bool) -> None:
    for flavour in Flavour:
        try:
            image = client.images.get(f"{flavour.repository}:latest")
        except ImageNotFound:
            print(f"{flavour.repository}:latest — not built ({flavour.target})")
            continue
        tag = f"[{flavour.name.lower()}]"
        print(format_report(image_report(image)).replace("[build]", tag))
        unpacked = int(image.attrs["Size"])
        models = model_layer_size(image)
        print(
            f"{tag} unpacked {unpacked / 1e6:.1f} MB; without the default models"
            f" {(unpacked - models) / 1e6:.1f} MB",
            flush=True,
        )
        if compressed:
            print(f"{tag} compressed (docker save | gzip): {gzip_size(image) / 1e6:.1f} MB")


def _elapsed_until(start: float, probe: Callable[[], bool], what: str) -> float:
    deadline = start + WAIT_S
    while time.monotonic() < deadline:
        try:
            if probe():
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"gave up after {WAIT_S:.0f}s waiting for {what}")


def startup(client: docker.DockerClient, image: str) -> None:
    data = Path(tempfile.mkdtemp(prefix="mentator-bench-data-"))
    http = httpx.Client(base_url=URL, timeout=5)
    start = time.monotonic()
    container = client.containers.run(
        image, detach=True, network_mode="host", volumes={str(data): {"bind": DATA, "mode": "rw"}}
    )
    try:
        t_http = _elapsed_until(
            start, lambda: http.get("/state/version").status_code == 200, "/state/version"
        )
        t_health = _elapsed_until(
            start, lambda: http.get("/health").json().get("status") == "ready", "/health ready"
        )
        models = http.get("/state/models").json()["models"]
        body = {
            "model": models[0]["name"],
            "durationMsec": 120000,
            "message": {"user": "Say OK."},
            "options": {"maxTokens": 4},
        }
        answered = http.post("/prompt", json=body, timeout=WAIT_S)
        t_answer = time.monotonic() - start
        print(f"[startup] {image}, model {models[0]['name']} ({models[0]['sizeKb']} KB)")
        print(f"[startup] start → HTTP answers (/state/version): {t_http:6.2f} s")
        print(f"[startup] start → /health ready:                 {t_health:6.2f} s")
        print(
            f"[startup] start → first /prompt answered:        {t_answer:6.2f} s "
            f"(HTTP {answered.status_code}; includes the model load)"
        )
    finally:
        http.close()
        try:
            container.remove(force=True)
        except NotFound:
            pass
        shutil.rmtree(data, ignore_errors=True)


def rebuild(repo_root: Path) -> None:
    touched = repo_root / TOUCHED
    original = touched.read_bytes()
    stat = touched.stat()
    env = pants_environment(os.environ)
    argv = package_command(Flavour.CPU)
    try:
        touched.write_bytes(original + b"# bench/image_stats.py: one-line change\n")
        start = time.monotonic()
        run_pants(repo_root, argv, env)
        changed = time.monotonic() - start
    finally:
        touched.write_bytes(original)
        os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    start = time.monotonic()
    run_pants(repo_root, argv, env)
    restored = time.monotonic() - start
    print(f"[rebuild] one-line Python change → image rebuilt: {changed:6.1f} s")
    print(f"[rebuild] change reverted → image rebuilt:        {restored:6.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-rebuild", action="store_true", help="skip the rebuild timing")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up timing")
    parser.add_argument(
        "--no-compressed", action="store_true", help="skip the compressed sizes (minutes)"
    )
    parser.add_argument(
        "--image",
        default=f"{Flavour.CPU.repository}:latest",
        help="image for the start-up timing (default: %(default)s)",
    )
    args = parser.parse_args()
    client = docker.from_env(timeout=120)
    sizes(client, compressed=not args.no_compressed)
    if not args.no_startup:
        startup(client, args.image)
    if not args.no_rebuild:
        rebuild(repo_root_from(Path.cwd()))


if __name__ == "__main__":
    main()
