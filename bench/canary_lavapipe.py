"""The start-up canary's time on the lavapipe TEST image (docker/lavapipe/): Vulkan on Mesa's CPU
driver against the CPU backend, as the e2e test runs it, per tier and per phase.

    ./pants run bench/canary_lavapipe.py                           # the image as built, 1 run
    ./pants run bench/canary_lavapipe.py -- --runs 3
    ./pants run bench/canary_lavapipe.py -- --source src/python/mentator   # this checkout's code

``--source DIR`` bind-mounts a ``mentator`` package over the image's own (no image rebuild for a
change in Python code). Each run starts the service on an empty data folder (the canary runs),
waits for ``/health``, and prints ``/state.backend.canary``: its ``seconds`` (the figure the
README quotes), every tier's ``seconds`` and, where the code reports them, its phases (load,
correctness, speed, stop). ``--restart`` then starts it again on the same data folder with the
canary's cached report deleted: the canary runs again with whatever the first start left in the
data folder (Mesa's shader cache), the case of a changed driver or engine. The load average is
printed beside every figure: the machine is shared. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import docker
import httpx
from docker.errors import NotFound

IMAGE = "mentator-llm-service-lavapipe-test:latest"
DATA = "/opt/mentator-llm-service/data"
PACKAGE = "/opt/mentator-llm-service/app/venv/lib/python3.13/site-packages/mentator"
UID = 12345
WAIT_S = 900.0


def _chown(path: Path) -> None:
    if os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(Path(root) / name, UID, UID)
    os.chown(path, UID, UID)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def one_start(
    client: docker.DockerClient,
    image: str,
    data: Path,
    dev: Path,
    source: Path | None,
    extra_env: dict[str, str],
) -> dict[str, Any]:
    volumes = {
        str(data): {"bind": DATA, "mode": "rw"},
        str(dev): {"bind": "/fake-dev", "mode": "ro"},
    }
    if source is not None:
        volumes[str(source.absolute())] = {"bind": PACKAGE, "mode": "ro"}
    environment = {
        "MENTATOR_DEV_ROOT": "/fake-dev",
        "MENTATOR_CANARY_LIMIT_S": "300",
        **extra_env,
    }
    load_before = _load()
    started = time.monotonic()
    container = client.containers.run(
        image,
        detach=True,
        volumes=volumes,
        environment=environment,
        ports={"19777/tcp": ("127.0.0.1", _free_port())},
    )
    try:
        deadline = started + WAIT_S
        url = None
        while time.monotonic() < deadline:
            container.reload()
            if container.status == "exited":
                raise SystemExit(container.logs().decode(errors="replace")[-4000:])
            bound = (container.attrs["NetworkSettings"]["Ports"] or {}).get("19777/tcp")
            if bound:
                url = f"http://127.0.0.1:{bound[0]['HostPort']}"
                try:
                    if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        else:
            raise SystemExit(f"no /health 200 within {WAIT_S:.0f} s")
        ready_s = time.monotonic() - started
        assert url is not None
        backend = httpx.get(f"{url}/state", timeout=10).json()["backend"]
        return {
            "backend": backend,
            "readyS": ready_s,
            "loadBefore": load_before,
            "loadAfter": _load(),
        }
    finally:
        try:
            container.remove(force=True)
        except NotFound:
            pass


def report(label: str, run: dict[str, Any]) -> None:
    canary = run["backend"]["canary"] or {}
    print(
        f"[{label}] canary {canary.get('seconds')} s (cached {canary.get('cached')}), "
        f"start → /health {run['readyS']:.1f} s; load average before {run['loadBefore']}, "
        f"after {run['loadAfter']}"
    )
    for tier in canary.get("tiers") or []:
        if not tier.get("loaded"):
            continue
        phases = tier.get("phases") or {}
        parts = ", ".join(f"{key} {value}" for key, value in phases.items())
        print(
            f"[{label}]   {tier['name']}: {tier['seconds']} s ({parts or 'no phases reported'}); "
            f"{tier.get('summary')}; prompt {tier.get('promptTokensPerSecond')} t/s"
        )
    print(f"[{label}]   → {str(canary.get('reason', '')).rsplit(' → ', 1)[-1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--source", type=Path, help="a mentator package to mount over the image's")
    parser.add_argument("--restart", action="store_true", help="also a second start, cache deleted")
    parser.add_argument("--json", action="store_true", help="print /state.backend too")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the container")
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)
    client = docker.from_env()
    for index in range(1, args.runs + 1):
        work = Path(tempfile.mkdtemp(prefix="mentator-canary-bench-"))
        try:
            data, dev = work / "data", work / "dev"
            data.mkdir()
            (dev / "dri").mkdir(parents=True)
            (dev / "dri" / "renderD128").touch()
            _chown(data)
            first = one_start(client, args.image, data, dev, args.source, extra_env)
            report(f"run {index} first start", first)
            cache = [path for path in (data / "shader-cache").rglob("*") if path.is_file()]
            size = sum(path.stat().st_size for path in cache)
            print(f"[run {index}]   data/shader-cache: {len(cache)} files, {size / 1e6:.1f} MB")
            if args.json:
                print(json.dumps(first["backend"], indent=2))
            if args.restart:
                (data / "backend-canary.json").unlink(missing_ok=True)
                again = one_start(client, args.image, data, dev, args.source, extra_env)
                report(f"run {index} again, canary cache deleted", again)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
