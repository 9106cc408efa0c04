"""Helpers for the end-to-end tests: containers with bounded waits, the service's HTTP API.

Every wait has a deadline; a failure message carries the container's log, so a red test says
what the container did.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import docker
import httpx
import jsonschema
import pytest
from docker.errors import NotFound
from docker.models.containers import Container

SERVICE_URL = "http://127.0.0.1:19777"
SERVICE_PORT = 19777
DATA_IN_CONTAINER = "/opt/mentator-llm-service/data"
CONFIG_NAME = "mentator-llm-service.conf.jsonc"
WAIT_S = 120.0
# The owner of the host data folders: a non-root uid, as a user's own folder is.
DATA_UID = 12345
DATA_GID = 12345

COLOUR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
    "required": ["colour"],
    "additionalProperties": False,
}

T = TypeVar("T")
_counter = itertools.count()


CPU_REPOSITORY = "mentator-llm-service-cpu"
UNIVERSAL_REPOSITORY = "mentator-llm-service"


def truthy_env(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


def missing(message: str) -> None:
    """A prerequisite is missing: skip locally, fail in CI (CI=true)."""
    if truthy_env("CI"):
        pytest.fail(message)
    pytest.skip(message)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for(
    what: str, probe: Callable[[], T | None], timeout_s: float, on_timeout: Callable[[], str]
) -> T:
    """Call `probe` until it returns something other than None; AssertionError after timeout."""
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (httpx.HTTPError, OSError) as err:
            result, last_error = None, f"{type(err).__name__}: {err}"
        if result is not None:
            return result
        time.sleep(1.0)
    raise AssertionError(
        f"timed out after {timeout_s:.0f}s waiting for {what}"
        f"{' (last error: ' + last_error + ')' if last_error else ''}\n{on_timeout()}"
    )


@dataclass
class Service:
    """One running container of the image, reached on 127.0.0.1:19777 (host network)."""

    container: Container
    http: httpx.Client

    def logs(self) -> str:
        try:
            return self.container.logs().decode("utf-8", "replace")
        except NotFound:
            return "(container gone)"

    def log_block(self) -> str:
        return f"--- container {self.container.name} log ---\n{self.logs()}--- end of log ---"

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def get_json(self, path: str) -> Any:
        response = self.http.get(path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def post_json(self, path: str, body: Any, timeout_s: float = WAIT_S) -> httpx.Response:
        return self.http.post(path, json=body, timeout=timeout_s)

    def wait_http(self, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """/state/version answers (the HTTP server is up; no model is loaded yet)."""

        def probe() -> dict[str, Any] | None:
            self.container.reload()
            if self.container.status == "exited":
                raise AssertionError(f"the container exited early\n{self.log_block()}")
            response = self.http.get("/state/version", timeout=5)
            return dict(response.json()) if response.status_code == 200 else None

        version = wait_for("GET /state/version", probe, timeout_s, self.log_block)
        # Host networking: make sure it is this container that answered.
        self.assert_owns_port()
        return version

    def wait_health(self, status: str, timeout_s: float = WAIT_S) -> str:
        """Docker's own HEALTHCHECK verdict (the image checks every 30 s)."""

        def probe() -> str | None:
            self.container.reload()
            health = self.container.attrs["State"].get("Health") or {}
            return status if health.get("Status") == status else None

        return wait_for(f"docker health '{status}'", probe, timeout_s, self.log_block)

    def wait_exit(self, timeout_s: float = WAIT_S) -> int:
        def probe() -> int | None:
            self.container.reload()
            if self.container.status != "exited":
                return None
            return int(self.container.attrs["State"]["ExitCode"])

        return wait_for("the container to exit", probe, timeout_s, self.log_block)

    def _run_in_container(self, script: str, user: str = "root") -> str:
        output = self.container.exec_run(["sh", "-c", script], user=user).output
        return output.decode("ascii", "replace") if isinstance(output, bytes) else ""

    def own_listeners(self, port: int = SERVICE_PORT) -> list[str]:
        """Addresses (hex, as /proc/net/tcp writes them) on which a process of THIS container
        listens on `port`.

        The e2e containers use host networking, so /proc/net/tcp lists every socket of the host;
        a socket counts only when its inode is held open by a process inside the container (the
        container's PID namespace shows only its own processes). Without this, another service on
        the same port would pass every check.
        """
        # Root in a container lacks CAP_SYS_PTRACE, so another user's fd links are unreadable:
        # list them as each uid:gid that owns a process in the container (both must match).
        owners = self._run_in_container("stat -c %u:%g /proc/[0-9]* 2>/dev/null | sort -u").split()
        inodes: set[str] = set()
        for uid in owners:
            fds = self._run_in_container("ls -l /proc/[0-9]*/fd/ 2>/dev/null", user=uid)
            inodes.update(re.findall(r"socket:\[(\d+)\]", fds))
        table = self._run_in_container("cat /proc/net/tcp /proc/net/tcp6")
        wanted = f"{port:04X}"
        addresses = []
        for line in table.splitlines():
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A = LISTEN
                continue
            address, _, local_port = fields[1].rpartition(":")
            if local_port == wanted and fields[9] in inodes:
                addresses.append(address)
        return addresses

    def assert_owns_port(self, port: int = SERVICE_PORT) -> None:
        assert self.own_listeners(port), (
            f"something answers on port {port}, but no process of container "
            f"{self.container.name} listens there\n{self.log_block()}"
        )

    def listens_on_all_interfaces(self, port: int = SERVICE_PORT) -> bool:
        """Does this container's service listen on 0.0.0.0 (or ::)? `docker run -p` needs it."""
        return any(set(address) == {"0"} for address in self.own_listeners(port))

    def restart(self, timeout_s: int = 30) -> None:
        self.container.restart(timeout=timeout_s)


@contextlib.contextmanager
def run_service(
    client: docker.DockerClient,
    image: str,
    data_dir: Path,
    *,
    read_only: bool = False,
    extra_mounts: dict[str, dict[str, str]] | None = None,
    environment: dict[str, str] | None = None,
    **run_options: Any,
) -> Iterator[Service]:
    """Start the image with `data_dir` mounted at the data folder; always removed afterwards.

    The container log is printed at the end (pytest shows it for failed tests only).
    """
    if not port_is_free(SERVICE_PORT):
        raise AssertionError(
            f"127.0.0.1:{SERVICE_PORT} is taken by another process; the end-to-end tests run the "
            "container with host networking on that fixed port. Stop the other service first."
        )
    volumes = {str(data_dir): {"bind": DATA_IN_CONTAINER, "mode": "ro" if read_only else "rw"}}
    volumes.update(extra_mounts or {})
    name = f"mentator-e2e-{os.getpid()}-{next(_counter)}"
    container = client.containers.run(
        image,
        name=name,
        detach=True,
        network_mode="host",
        volumes=volumes,
        environment=environment or {},
        **{key: value for key, value in run_options.items() if value is not None},
    )
    service = Service(container, httpx.Client(base_url=SERVICE_URL, timeout=30))
    try:
        yield service
    finally:
        print(service.log_block())
        service.http.close()
        with contextlib.suppress(NotFound):
            container.remove(force=True)


@dataclass(frozen=True)
class FileState:
    """What "untouched" means for a file: same inode, same mtime, same bytes."""

    inode: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> FileState:
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return cls(inode=stat.st_ino, mtime_ns=stat.st_mtime_ns, sha256=digest)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    if os.geteuid() != 0:
        return  # not root: the folder is already owned by this non-root user
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(Path(root) / name, uid, gid)


def ask_colour(service: Service, model: str) -> dict[str, Any]:
    response = service.post_json(
        "/prompt",
        {
            "model": model,
            "durationMsec": 90000,
            "message": {"user": "Pick one colour of the sky. Answer in JSON."},
            "options": {"temperature": 0, "maxTokens": 64},
            "format": {"useGrammar": True, "jsonSchema": COLOUR_SCHEMA},
        },
    )
    assert (
        response.status_code == 200
    ), f"{response.status_code} {response.text}\n{service.log_block()}"
    body = response.json()
    jsonschema.validate(body["result"]["data"], COLOUR_SCHEMA)
    return dict(body)
