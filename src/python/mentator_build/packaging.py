"""Build an image flavour through Pants, then check its tags and report its size.

Pants owns the build (docker/BUILD: build args, context, tags); this module only chooses the
target and inspects the result with the Docker SDK. Nothing is compiled: both flavours install
Debian's prebuilt engine, so there are no GPU build settings to pass.
"""

from __future__ import annotations

import ast
import enum
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import ImageNotFound
from docker.models.images import Image

PRELUDE = Path("build-support/prelude.py")
VERSION_CONSTANT = "MENTATOR_VERSION"


class PackagingError(Exception):
    """The image could not be built or is not what the build should have produced."""


class Flavour(enum.Enum):
    """The image flavours of docker/BUILD: (Pants target, image repository)."""

    CPU = ("docker:mentator-cpu", "mentator-llm-service-cpu")
    UNIVERSAL = ("docker:mentator", "mentator-llm-service")

    @property
    def target(self) -> str:
        return self.value[0]

    @property
    def repository(self) -> str:
        return self.value[1]

    @classmethod
    def from_name(cls, name: str) -> Flavour:
        return {"cpu": cls.CPU, "universal": cls.UNIVERSAL}[name]


@dataclass(frozen=True)
class Layer:
    size: int
    created_by: str


@dataclass(frozen=True)
class ImageReport:
    image_id: str
    tags: tuple[str, ...]
    size: int
    largest_layers: tuple[Layer, ...]


def read_version(repo_root: Path) -> str:
    """MENTATOR_VERSION from build-support/prelude.py (parsed, never executed)."""
    prelude = repo_root / PRELUDE
    try:
        tree = ast.parse(prelude.read_text(encoding="utf-8"), filename=str(prelude))
    except (OSError, SyntaxError) as err:
        raise PackagingError(f"cannot read {VERSION_CONSTANT} from {prelude}: {err}") from err
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == VERSION_CONSTANT for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise PackagingError(
        f"{prelude} has no string assignment '{VERSION_CONSTANT} = \"X.Y.Z\"'; restore it."
    )


def pants_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The environment for the nested `./pants package` run.

    PANTS_CONCURRENT: this program usually runs under `./pants run`, whose pantsd session is
    still open; a second Pants client would wait for it (and give up after 60 s). Concurrent
    mode makes the nested run start without pantsd instead.
    """
    env = dict(base)
    env["PANTS_CONCURRENT"] = "true"
    return env


def package_command(flavour: Flavour) -> list[str]:
    return ["./pants", "package", flavour.target]


def run_pants(repo_root: Path, argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Run Pants in the repository root, its output going straight to the terminal."""
    print(f"[build] $ {' '.join(argv)}", flush=True)
    result = subprocess.run(list(argv), cwd=repo_root, env=dict(env), check=False)
    if result.returncode != 0:
        raise PackagingError(
            f"'{' '.join(argv)}' failed with exit code {result.returncode} (its output is above)."
        )


def expected_tags(flavour: Flavour, version: str) -> list[str]:
    return [f"{flavour.repository}:latest", f"{flavour.repository}:{version}"]


def check_tags(client: docker.DockerClient, flavour: Flavour, version: str) -> Image:
    """The built image; both `latest` and the version tag must exist and be the same image."""
    images: dict[str, Image] = {}
    for tag in expected_tags(flavour, version):
        try:
            images[tag] = client.images.get(tag)
        except ImageNotFound as err:
            raise PackagingError(
                f"the build finished but the tag {tag} does not exist; "
                f"run './pants package {flavour.target}' and read its output."
            ) from err
    ids = {image.id for image in images.values()}
    if len(ids) != 1:
        detail = ", ".join(f"{tag} → {image.short_id}" for tag, image in images.items())
        raise PackagingError(f"the tags point at different images ({detail}); rebuild.")
    return next(iter(images.values()))


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def image_report(image: Image, top: int = 5) -> ImageReport:
    """Size and the `top` largest layers (from the image history)."""
    history: list[dict[str, object]] = image.history()
    layers = sorted(
        (Layer(_int(entry.get("Size")), str(entry.get("CreatedBy", ""))) for entry in history),
        key=lambda layer: layer.size,
        reverse=True,
    )
    return ImageReport(
        image_id=str(image.id),
        tags=tuple(image.tags),
        size=_int(image.attrs.get("Size")),
        largest_layers=tuple(layers[:top]),
    )


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def format_report(report: ImageReport) -> str:
    lines = [
        f"[build] image {report.image_id[:19]} ({', '.join(sorted(report.tags))})",
        f"[build] image size: {human_size(report.size)} ({report.size} bytes)",
        f"[build] {len(report.largest_layers)} largest layers:",
    ]
    for layer in report.largest_layers:
        step = " ".join(layer.created_by.split())
        step = step if len(step) <= 100 else step[:97] + "..."
        lines.append(f"[build]   {human_size(layer.size):>9}  {step}")
    return "\n".join(lines)


def repo_root_from(start: Path) -> Path:
    """The repository root: the nearest folder at or above `start` holding pants.toml."""
    for folder in [start, *start.parents]:
        if (folder / "pants.toml").is_file():
            return folder
    raise PackagingError(
        f"no pants.toml at or above {start}; run from the repository "
        "('./pants run src/python/mentator_build:build -- ...') or pass --repo-root."
    )


def default_repo_root() -> Path:
    return repo_root_from(Path.cwd())
