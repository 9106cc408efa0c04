"""docker-entrypoint.sh started as a non-root user, as the Kubernetes manifests start it
(runAsUser/runAsGroup 10001, the data volume group-writable through fsGroup, a read-only root
filesystem with /tmp an emptyDir): it runs as that user, ignores PUID/PGID with a log line, seeds
the default models and starts the service; an unwritable data folder or /tmp is a clear exit 78
that names the Kubernetes fix; a GPU device node of a group the process lacks is named.

The script runs outside a container against a fake install root (MENTATOR_ROOT) and a fake
python that stands in for the service. As root, it is started through setpriv as uid 10001."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ENTRYPOINT = Path("docker/docker-entrypoint.sh")
UID = GID = 10001
FAKE_PYTHON = """#!/bin/sh
# Stands in for the service's python: the hardware decision, then the service itself.
case "$3 $4" in
  "--detect-hardware --explain") echo "backend cpu selected: test" >&2; echo '{"backend":"cpu"}' ;;
  "--detect-hardware --env-flag") echo "" ;;
  *) echo "SERVICE uid=$(id -u) gid=$(id -g) args=$*" ;;
esac
"""


@dataclass
class Install:
    root: Path
    data: Path
    tmp: Path

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "MENTATOR_ROOT": str(self.root),
            "MENTATOR_PYTHON": str(self.root / "python"),
            "MENTATOR_DEV_ROOT": str(self.root / "dev"),
            "TMPDIR": str(self.tmp),
        }
        command = ["sh", str(self.root / "docker-entrypoint.sh"), *args]
        if os.getuid() == 0:
            command = [
                "setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "--", *command,
            ]  # fmt: skip
        return subprocess.run(
            command, env={**base, **env}, capture_output=True, text=True, timeout=60, check=False
        )


def _owned_by_the_pod(path: Path, mode: int) -> None:
    """What fsGroup makes of a volume: group 10001, group-writable, setgid."""
    if os.getuid() == 0:
        os.chown(path, 0, GID)
    path.chmod(mode)


@pytest.fixture
def install() -> Iterator[Install]:
    if os.getuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot start the script as uid 10001")
    # Not under pytest's tmp_path: its parents are private to root, uid 10001 could not enter.
    root = Path(tempfile.mkdtemp(prefix="mentator-entrypoint-"))
    try:
        root.chmod(0o755)
        shutil.copy(ENTRYPOINT, root / "docker-entrypoint.sh")
        (root / "python").write_text(FAKE_PYTHON)
        (root / "python").chmod(0o755)
        (root / "default-models").mkdir(mode=0o755)
        (root / "default-models" / "tiny.gguf").write_bytes(b"GGUF")
        (root / "default-models" / "tiny.gguf").chmod(0o644)
        (root / "dev").mkdir(mode=0o755)
        data = root / "data"
        data.mkdir()
        _owned_by_the_pod(data, 0o2775)
        tmp = root / "tmp"
        tmp.mkdir()
        tmp.chmod(0o1777)
        for path in (root / "docker-entrypoint.sh",):
            path.chmod(0o755)
        yield Install(root, data, tmp)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_runs_as_itself_seeds_models_and_starts_the_service(install: Install) -> None:
    uid, gid = (UID, GID) if os.getuid() == 0 else (os.getuid(), os.getgid())
    done = install.run("--conf-docker", "/etc/mentator/conf.jsonc", PUID="1234", PGID="1234")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"running as uid {uid}, gid {gid}" in out
    assert f"PUID/PGID ignored: the container already runs as uid {uid}" in out
    assert "copied default model tiny.gguf" in out
    assert (install.data / "models" / "tiny.gguf").read_bytes() == b"GGUF"
    assert (
        f"SERVICE uid={uid} gid={gid} args=-m mentator --conf-docker /etc/mentator/conf.jsonc"
        in out
    )


def test_an_unwritable_data_folder_names_the_fsgroup_fix(install: Install) -> None:
    install.data.chmod(0o555)
    done = install.run()
    assert done.returncode == 78, done.stdout + done.stderr
    assert "securityContext.fsGroup" in done.stderr
    assert "SERVICE" not in done.stdout


def test_an_unwritable_tmp_names_the_emptydir_fix(install: Install) -> None:
    install.tmp.chmod(0o555)
    done = install.run()
    assert done.returncode == 78, done.stdout + done.stderr
    assert "cannot create a temporary file" in done.stderr
    assert "an emptyDir at /tmp" in done.stderr


def test_a_gpu_node_of_a_missing_group_is_named(install: Install) -> None:
    node = install.root / "dev" / "kfd"
    node.write_bytes(b"")
    if os.getuid() == 0:
        os.chown(node, 0, 4321)
    else:
        pytest.skip("only root can give the fake device node a foreign group")
    node.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP)
    done = install.run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "a GPU device node belongs to gid 4321, which this process lacks" in done.stdout
