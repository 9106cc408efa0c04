"""Fill the local wheelhouse that the Pex lockfile points at.

The lockfile (3rdparty/python/default.lock) must not name a package registry's host, so Pants
resolves from a local folder of wheels (`[python-repos] find_links`, mapped to `${WHEELHOUSE}`)
instead of an index. This program fills that folder with the ordinary client (`pip download`):

* `--lock LOCK`: download every artifact the lock names and check each one's sha256 against the
  lock (the normal case: bootstrap, CI). Nothing is resolved; the lock is the single source.
* `--requirements FILE`: resolve FILE for the project interpreter (CPython 3.13, manylinux x86_64)
  and download the whole closure, to (re)generate the lock with `./pants generate-lockfiles`.

Runs under the Pants bootstrap venv's CPython 3.9 and under 3.13: standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The project interpreter (pants.toml [python] interpreter_constraints); manylinux up to the
# oldest glibc that runs the tests (Debian bookworm hosts: 2.36; the image's forky has 2.43).
PLATFORM_ARGS = [
    "--only-binary=:all:",
    "--implementation=cp",
    "--python-version=3.13",
    "--abi=cp313",
    "--abi=abi3",
    "--abi=none",
    *(
        f"--platform={p}"
        for p in (
            "manylinux_2_36_x86_64",
            "manylinux_2_35_x86_64",
            "manylinux_2_34_x86_64",
            "manylinux_2_28_x86_64",
            "manylinux_2_27_x86_64",
            "manylinux_2_24_x86_64",
            "manylinux_2_17_x86_64",
            "manylinux2014_x86_64",
            "manylinux_2_12_x86_64",
            "manylinux2010_x86_64",
            "manylinux_2_5_x86_64",
            "manylinux1_x86_64",
            "linux_x86_64",
            "any",
        )
    ),
]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_lock(lock: Path) -> dict[str, tuple[str, str, str]]:
    """Return {filename: (project, version, sha256)} for every artifact in a Pex lock."""
    text = "\n".join(line for line in lock.read_text().splitlines() if not line.startswith("//"))
    data = json.loads(text)
    wanted: dict[str, tuple[str, str, str]] = {}
    for resolve in data["locked_resolves"]:
        for req in resolve["locked_requirements"]:
            for art in req["artifacts"]:
                url: str = art["url"]
                if "${WHEELHOUSE}/" not in url:
                    raise SystemExit(
                        f"{lock}: artifact {url!r} does not come from the wheelhouse; "
                        "regenerate the lock with `./pants generate-lockfiles`."
                    )
                name = url.rsplit("/", 1)[1]
                wanted[name] = (req["project_name"], req["version"], art["hash"])
    return wanted


def pip_download(args: list[str], dest: Path, cert: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *cert, "-d", str(dest)]
    env = dict(os.environ, PIP_CONFIG_FILE="/dev/null", PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([*cmd, *PLATFORM_ARGS, *args], check=True, env=env)


def fill_pex_pip(pins: Path, dest: Path, cert: list[str]) -> None:
    """Download the hash-pinned pip/setuptools/wheel that Pex itself runs.

    The file pins several versions of the same project, which one pip call refuses: one call per
    line, skipped when the wheel is already there.
    """
    env = dict(os.environ, PIP_CONFIG_FILE="/dev/null", PIP_DISABLE_PIP_VERSION_CHECK="1")
    for line in pins.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, version = line.split()[0].split("==")
        if list(dest.glob(f"{name}-{version}-*.whl")):
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as req:
            req.write(line + "\n")
            req.flush()
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes"]
            subprocess.run([*cmd, *cert, "-d", str(dest), "-r", req.name], check=True, env=env)


def fill_from_lock(lock: Path, dest: Path, cert: list[str]) -> int:
    wanted = read_lock(lock)
    missing = {
        name: meta
        for name, meta in wanted.items()
        if not (dest / name).is_file() or sha256_of(dest / name) != meta[2]
    }
    if not missing:
        return 0
    print(f"[wheelhouse] downloading {len(missing)} locked artifact(s)", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        specs = sorted({f"{project}=={version}" for project, version, _ in missing.values()})
        pip_download(specs, Path(tmp), cert)
        for name, (_project, _version, sha) in sorted(missing.items()):
            got = Path(tmp) / name
            if not got.is_file():
                raise SystemExit(
                    f"[wheelhouse] pip did not download {name}; available: "
                    f"{sorted(os.listdir(tmp))}"
                )
            if sha256_of(got) != sha:
                raise SystemExit(f"[wheelhouse] {name}: sha256 differs from the lock ({sha})")
            shutil.move(str(got), str(dest / name))
    return 0


def fill_from_requirements(requirements: Path, dest: Path, cert: list[str]) -> int:
    # Resolve the closure (with dependencies) for the project interpreter's platform.
    cmd = [sys.executable, "-m", "pip", "download", "-q", *cert, "-d", str(dest)]
    env = dict(os.environ, PIP_CONFIG_FILE="/dev/null", PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([*cmd, *PLATFORM_ARGS, "-r", str(requirements)], check=True, env=env)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--lock", type=Path, help="download exactly what this Pex lock names")
    source.add_argument("--requirements", type=Path, help="resolve and download a closure")
    parser.add_argument("--dest", type=Path, required=True, help="the wheelhouse folder")
    parser.add_argument("--cert", help="CA bundle for pip (HTTPS through a TLS proxy)")
    parser.add_argument(
        "--pex-pip",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "3rdparty/python/pex-pip.txt",
        help="hash-pinned pip/setuptools/wheel for Pex (not part of the lock)",
    )
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    cert = ["--cert", args.cert] if args.cert else []
    fill_pex_pip(args.pex_pip, args.dest, cert)
    if args.lock:
        if not args.lock.is_file():
            print(f"[wheelhouse] no lock at {args.lock}: nothing to fetch", file=sys.stderr)
            return 0
        return fill_from_lock(args.lock, args.dest, cert)
    return fill_from_requirements(args.requirements, args.dest, cert)


if __name__ == "__main__":
    sys.exit(main())
