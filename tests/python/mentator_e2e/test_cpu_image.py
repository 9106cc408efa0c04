"""The CPU image in a real Docker daemon: first start, restart, a user model.
One container at a time (host network, fixed port 19777).

The tests of this module share one data folder (owned by a non-root uid, as a user's folder is)
and run in file order: first start → restart → user model. Each later test needs the state the
earlier one left, like a real deployment.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from mentator_e2e.harness import (
    CONFIG_NAME,
    DATA_GID,
    DATA_UID,
    FileState,
    Service,
    ask_colour,
    chown_tree,
    run_service,
)

pytestmark = pytest.mark.e2e

USER_MODEL = "my-own-model.gguf"


class Snapshot:
    """State recorded by the first-start test for the tests after it."""

    model_name: str = ""
    config: FileState | None = None
    model: FileState | None = None
    last_log_id: int = 0
    last_log_message: str = ""


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return Snapshot()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An EMPTY host folder owned by a non-root uid, like a user's own folder."""
    folder = tmp_path_factory.mktemp("data")
    folder.chmod(0o755)
    chown_tree(folder, DATA_UID, DATA_GID)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def service(
    docker_client: docker.DockerClient, cpu_image: str, data_dir: Path
) -> Iterator[Service]:
    with run_service(docker_client, cpu_image, data_dir) as running:
        yield running


def test_first_start_creates_config_seeds_model_and_answers(
    service: Service, data_dir: Path, snapshot: Snapshot
) -> None:
    version = service.wait_http()
    assert version["version"] == os.environ["MENTATOR_VERSION"]
    # docker mode must accept connections from outside the container (`-p 19777:19777`)
    assert (
        service.listens_on_all_interfaces()
    ), f"port 19777 is not bound to 0.0.0.0 in docker mode\n{service.log_block()}"

    config = data_dir / CONFIG_NAME
    assert config.is_file(), f"no {config} after the first start\n{service.log_block()}"
    seeded = sorted((data_dir / "models").glob("*.gguf"))
    assert len(seeded) == 1, f"expected one seeded default model, found {seeded}"
    assert seeded[0].stat().st_uid == (DATA_UID if os.geteuid() == 0 else os.geteuid())
    assert "copied default model" in service.logs()

    models = service.get_json("/state/models")["models"]
    assert [m["name"] for m in models] == [seeded[0].name]

    answer = ask_colour(service, seeded[0].name)
    assert answer["result"]["loadModelStatus"] == "load"

    # Docker's own HEALTHCHECK (curl /state/version in the image) turns the container healthy.
    service.wait_health("healthy", timeout_s=120)

    logs = service.get_json("/log/core/byid?limit=200")["logs"]
    assert logs, "the core log is empty after a start and a prompt"
    snapshot.model_name = seeded[0].name
    snapshot.last_log_id = int(logs[0]["id"])
    snapshot.last_log_message = str(logs[0]["message"])

    # A user edit to the config (a comment) must survive every later start.
    config.write_text("// edited by the user: keep me\n" + config.read_text(), encoding="utf-8")
    snapshot.config = FileState.of(config)
    snapshot.model = FileState.of(seeded[0])


def test_restart_keeps_config_models_and_database(
    service: Service, data_dir: Path, snapshot: Snapshot
) -> None:
    assert snapshot.config is not None and snapshot.model is not None, "first-start test failed"
    service.restart()
    service.wait_http()

    assert FileState.of(data_dir / CONFIG_NAME) == snapshot.config, "the config was rewritten"
    assert (data_dir / CONFIG_NAME).read_text().startswith("// edited by the user: keep me\n")
    assert FileState.of(data_dir / "models" / snapshot.model_name) == snapshot.model
    assert sorted(p.name for p in (data_dir / "models").iterdir()) == [snapshot.model_name]
    assert "not empty: default models not copied" in service.logs()

    # the rows written before the restart are still there
    rows = service.get_json(f"/log/core/byid?afterId={snapshot.last_log_id - 1}&limit=200")["logs"]
    before = [row for row in rows if int(row["id"]) == snapshot.last_log_id]
    assert before and before[0]["message"] == snapshot.last_log_message
    assert any(
        int(row["id"]) > snapshot.last_log_id for row in rows
    ), "nothing logged after restart"

    ask_colour(service, snapshot.model_name)


def test_user_model_dropped_into_the_volume_is_listed(
    service: Service, data_dir: Path, snapshot: Snapshot
) -> None:
    assert snapshot.model_name, "first-start test failed"
    models_dir = data_dir / "models"
    user_model = models_dir / USER_MODEL
    shutil.copyfile(models_dir / snapshot.model_name, user_model)
    chown_tree(models_dir, DATA_UID, DATA_GID)

    names = [m["name"] for m in service.get_json("/state/models?rescan=1")["models"]]
    assert USER_MODEL in names and snapshot.model_name in names, names
    ask_colour(service, USER_MODEL)


def test_web_ui_is_served_from_the_image(service: Service) -> None:
    """The web UI's pages and assets come from the image's own package (docs/ui.md): nothing
    is fetched from elsewhere, so they work with no network."""
    service.wait_http()
    for path in ("/", "/chat", "/stat", "/log/core", "/log/chat", "/ui/common.js", "/ui/ui.css"):
        response = service.get(path)
        assert (
            response.status_code == 200
        ), f"GET {path}: {response.status_code}\n{service.log_block()}"
        assert "default-src 'self'" in response.headers.get("content-security-policy", ""), path
