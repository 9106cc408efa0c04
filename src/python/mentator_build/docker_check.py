"""Is Docker installed, and does its daemon answer? If not, say exactly how to fix it.

The build shells out to `docker` (through Pants) and talks to the daemon through the Docker SDK,
so both the client program and a reachable daemon are required. Every failure becomes a
`DockerUnavailableError` whose message lists the likely fixes, most likely first.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import docker
import requests
from docker.errors import DockerException

# Where a docker client usually lives; Pants' wrapper (build-support/docker-bin) searches the
# same places, /usr/bin first (the distribution's client matches the distribution's daemon).
CLIENT_CANDIDATES = (
    Path("/usr/bin/docker"),
    Path("/usr/local/bin/docker"),
    Path("/opt/homebrew/bin/docker"),
    Path("/snap/bin/docker"),
)

INSTALL_HINT = (
    "install Docker Engine 20.10 or newer (Debian/Ubuntu: 'sudo apt-get install docker.io'; "
    "other systems: Docker's install guide)"
)
START_HINT = "start the daemon: 'sudo systemctl start docker' (or run 'sudo dockerd' in a terminal)"
GROUP_HINT = (
    "let your user talk to the daemon: 'sudo usermod -aG docker \"$USER\"', then log out and in "
    "again (or run 'newgrp docker')"
)


class DockerUnavailableError(Exception):
    """Docker cannot be used; the message says why and how to fix it."""


def find_client(environ: Mapping[str, str]) -> Path | None:
    """The docker client: $MENTATOR_DOCKER, then the usual install paths, then PATH."""
    explicit = environ.get("MENTATOR_DOCKER")
    if explicit:
        return Path(explicit) if os.access(explicit, os.X_OK) else None
    for candidate in CLIENT_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("docker", path=environ.get("PATH"))
    return Path(found) if found else None


def _fixes_for(error_text: str, environ: Mapping[str, str]) -> list[str]:
    """The fixes worth trying for this failure, most likely first."""
    docker_host = environ.get("DOCKER_HOST")
    host_hint = (
        f"DOCKER_HOST is set to '{docker_host}': check that a daemon listens there, or unset it "
        "to use the local socket /var/run/docker.sock"
        if docker_host
        else "if the daemon listens elsewhere, set DOCKER_HOST (e.g. unix:///run/user/1000/docker.sock)"
    )
    lowered = error_text.lower()
    if "permission denied" in lowered:
        return [GROUP_HINT, START_HINT, host_hint]
    if docker_host:
        return [host_hint, START_HINT, GROUP_HINT]
    return [START_HINT, GROUP_HINT, host_hint]


def connect(environ: Mapping[str, str] | None = None, timeout_s: int = 10) -> docker.DockerClient:
    """A Docker SDK client whose daemon has answered a ping; raises DockerUnavailableError."""
    env = dict(os.environ if environ is None else environ)
    if find_client(env) is None:
        raise DockerUnavailableError(
            "Docker is not installed: no 'docker' program was found (looked at "
            f"{', '.join(str(p) for p in CLIENT_CANDIDATES)} and PATH).\n"
            f"  Fix: {INSTALL_HINT}; or set MENTATOR_DOCKER=/path/to/docker."
        )
    try:
        client = docker.DockerClient.from_env(environment=env, timeout=timeout_s)
        client.ping()
    except (DockerException, requests.RequestException) as err:
        fixes = "\n".join(f"  - {fix}" for fix in _fixes_for(str(err), env))
        where = env.get("DOCKER_HOST") or "the default socket /var/run/docker.sock"
        raise DockerUnavailableError(
            f"The Docker daemon does not answer at {where}: {err}\n  Fix:\n{fixes}"
        ) from err
    return client
