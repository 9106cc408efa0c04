"""deploy/kubernetes/, checked offline (no cluster here): every overlay (and every optional
component on top of it) renders with `kubectl kustomize`; every object validates against the
Kubernetes OpenAPI schemas (PyPI kubernetes-validate, strict: unknown fields are errors) or, for
KEDA's ScaledObject and the Prometheus Operator's ServiceMonitor, against their CRDs' schemas in
../shared/k8s-crds/ (read in place); and the manifests agree with the service and the image:
the metrics the autoscaler and the scraper name exist, the probes' paths are routes that need no
API key, the port and the user are the image's, the config file is complete, and the shutdown
timings fit together.

kubectl comes from MENTATOR_KUBECTL (./pants points it at build-support/fetch-kubectl.sh's copy)
or PATH; without one these tests skip, except under CI=true, where they fail."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from fastapi.testclient import TestClient
from kubernetes_validate.utils import SchemaNotFoundError

from mentator.api.app import ROUTERS, create_app
from mentator.api.metrics import ApiMetrics
from mentator.config.keys import DEFAULT_PORT, DOCKER_DATA_ROOT
from mentator.config.loader import load_docker
from mentator_testing.fake_engine import build_settings, build_test_services

KUSTOMIZE = Path("deploy/kubernetes")
DOCKERFILE = Path("docker/Dockerfile")
OVERLAYS = ("cpu", "nvidia", "amd")
# Every optional component, on top of each overlay (the nvidia one only under nvidia).
OPTIONAL = {
    "cpu": ("ingress", "shared-models"),
    "nvidia": ("ingress", "shared-models", "nvidia-runtime-class"),
    "amd": ("ingress", "shared-models"),
}
# The oldest Kubernetes the manifests are meant for, and the newest the package knows.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
VARIANTS = [(name, ()) for name in OVERLAYS] + [(name, OPTIONAL[name]) for name in OVERLAYS]
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}

Objects = list[dict[str, Any]]


# --- kubectl and rendering --------------------------------------------------------------------


def _kubectl() -> str:
    candidates = [os.environ.get("MENTATOR_KUBECTL", ""), shutil.which("kubectl") or ""]
    problems = []
    for candidate in filter(None, candidates):
        if not os.access(candidate, os.X_OK):
            problems.append(f"{candidate}: not found")
            continue
        version = subprocess.run(
            [candidate, "version", "--client"], capture_output=True, text=True, check=False
        ).stdout
        found = re.search(r"Kustomize Version: v(\d+)", version)
        if found and int(found.group(1)) >= 4:
            return candidate
        problems.append(f"{candidate}: kustomize v4 or newer needed (components), got {version!r}")
    reason = (
        "no kubectl with kustomize v4+ to render deploy/kubernetes/ (build-support/"
        f"fetch-kubectl.sh fetches one; ./pants sets MENTATOR_KUBECTL): {problems or 'none'}"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def kubectl() -> str:
    return _kubectl()


def render(kubectl: str, overlay: str, components: tuple[str, ...] = ()) -> Objects:
    """`kubectl kustomize` of an overlay; with extra components, of a copy of the overlay beside
    it that lists them too (what a user does by uncommenting the overlay's lines)."""
    target = KUSTOMIZE / "overlays" / overlay
    if components:
        copy = target.with_name(f".variant-{overlay}")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(target, copy)
        kustomization = yaml.safe_load((copy / "kustomization.yaml").read_text(encoding="utf-8"))
        kustomization["components"] += [f"../../components/{name}" for name in components]
        (copy / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        target = copy
    done = subprocess.run(
        [kubectl, "kustomize", str(target)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {target} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(kubectl: str) -> dict[str, Objects]:
    """Each overlay alone, by name."""
    return {name: render(kubectl, name) for name in OVERLAYS}


def one(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(objects: Objects) -> dict[str, Any]:
    [main] = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert isinstance(main, dict)
    return main


# --- schemas ----------------------------------------------------------------------------------


def _closed(schema: Any) -> Any:
    """A CRD schema that rejects unknown fields, like the API server's strict field validation:
    every object with ``properties`` and no say on other keys gets additionalProperties false."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@pytest.fixture(scope="module")
def crd_schemas() -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) → the CRD's OpenAPI v3 schema, from ../shared/k8s-crds/."""
    folder = Path(os.environ.get("MENTATOR_K8S_CRDS", "../shared/k8s-crds"))
    if not folder.is_dir():
        pytest.skip(f"the KEDA and Prometheus Operator CRDs are not at {folder} (shared folder)")
    schemas = {}
    for path in sorted(folder.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = _closed(
                version["schema"]["openAPIV3Schema"]
            )
    return schemas


def schema_errors(obj: dict[str, Any], crds: dict[tuple[str, str], Any]) -> list[str]:
    where = f"{obj['kind']} {obj['metadata']['name']}"
    crd = crds.get((obj["apiVersion"], obj["kind"]))
    if crd is not None:
        validator = jsonschema.Draft7Validator(crd)
        return [
            f"{where} at /{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(obj)
        ]
    errors = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(map(str, error.absolute_path))
            errors.append(f"{where} (Kubernetes {version}) at /{path}: {error.message}")
        except SchemaNotFoundError as error:
            errors.append(f"{where}: no schema in Kubernetes {version} nor a CRD ({error.message})")
    return errors


@pytest.mark.parametrize(("overlay", "components"), VARIANTS)
def test_every_overlay_renders_and_every_object_validates(
    kubectl: str,
    crd_schemas: dict[tuple[str, str], Any],
    overlay: str,
    components: tuple[str, ...],
) -> None:
    objects = render(kubectl, overlay, components)
    kinds = {o["kind"] for o in objects}
    assert {"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    assert {"ScaledObject", "ServiceMonitor"} <= kinds
    if "ingress" in components:
        assert "Ingress" in kinds
    namespace = one(objects, "StatefulSet")["metadata"]["namespace"]
    assert {o["metadata"].get("namespace") for o in objects} == {namespace}
    errors = [error for obj in objects for error in schema_errors(obj, crd_schemas)]
    assert errors == []


def test_the_crd_check_rejects_what_the_api_server_would(
    rendered: dict[str, Objects], crd_schemas: dict[tuple[str, str], Any]
) -> None:
    scaled = dict(one(rendered["cpu"], "ScaledObject"))
    scaled["spec"] = {**scaled["spec"], "maxReplicas": 4}  # KEDA's field is maxReplicaCount
    assert any("maxReplicas" in error for error in schema_errors(scaled, crd_schemas))


# --- agreement with the service and the image -------------------------------------------------


@pytest.fixture(scope="module")
def exported_metrics() -> set[str]:
    """Every sample name the service's /metrics can carry (a counter ``x`` is ``x_total``)."""
    names = set()
    for family in ApiMetrics().registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.update({f"{family.name}_total", f"{family.name}_created"})
        if family.type == "histogram":
            names.update(f"{family.name}_{part}" for part in ("bucket", "sum", "count"))
    return names


def promql_metrics(query: str) -> set[str]:
    """Metric names in a PromQL query: identifiers outside label matchers that are not called
    as functions and are not keywords."""
    bare = re.sub(r"\{[^}]*\}", "", query)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", bare)
    names = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*(?![A-Za-z0-9_:]*\s*\()", bare)
    return {name for name in names if name not in PROMQL_WORDS}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_metric_the_autoscaler_and_the_scraper_name_is_exported(
    rendered: dict[str, Objects], exported_metrics: set[str], overlay: str
) -> None:
    objects = rendered[overlay]
    scaled = one(objects, "ScaledObject")
    queries = [t["metadata"]["query"] for t in scaled["spec"]["triggers"]]
    named = set().union(*(promql_metrics(query) for query in queries))
    assert named <= exported_metrics, f"not exported by the service: {named - exported_metrics}"
    assert named == {"mentator_queue_waiting"}  # the waiting queue, per replica
    monitor = one(objects, "ServiceMonitor")
    relabelled = [
        rule.get("regex", "")
        for endpoint in monitor["spec"]["endpoints"]
        for rule in endpoint.get("metricRelabelings", [])
        if "__name__" in rule.get("sourceLabels", [])
    ]
    for regex in relabelled:
        assert any(re.fullmatch(regex, name) for name in exported_metrics), regex


@dataclass
class App:
    client: TestClient
    routes: set[str]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The service's app with an API key set (to see which routes need none)."""
    settings = build_settings(tmp_path_factory.mktemp("app"))
    services = build_test_services(dataclasses.replace(settings, api_keys=("k",)), None)
    routes = {str(getattr(route, "path", "")) for router in ROUTERS for route in router.routes}
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        yield App(client, routes)
    if services.database is not None:
        services.database.close()


def _image_facts() -> tuple[int, int]:
    """(EXPOSEd port, uid of the service user) from the Dockerfile."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    exposed = re.findall(r"^EXPOSE\s+(\d+)", text, re.MULTILINE)
    uids = re.findall(r"useradd\s+--uid\s+(\d+)", text)
    assert len(exposed) == 1 and len(uids) == 1, (exposed, uids)
    return int(exposed[0]), int(uids[0])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ports_and_user_match_the_service_and_the_image(
    rendered: dict[str, Objects], app: App, overlay: str
) -> None:
    objects = rendered[overlay]
    main = container(objects)
    port, uid = _image_facts()
    assert port == DEFAULT_PORT
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"http": port}
    routes = app.routes
    probes = {name: main[name]["httpGet"] for name in ("startupProbe", "readinessProbe")}
    probes["livenessProbe"] = main["livenessProbe"]["httpGet"]
    for name, probe in probes.items():
        assert probe["port"] in ports, name
        assert probe["path"] in routes, f"{name}: {probe['path']} is not a route"
        # Kubelet sends no API key: the probe must answer without one (not 401).
        answer = app.client.get(probe["path"])
        assert answer.status_code not in (401, 404, 405), (name, answer.status_code, answer.text)
    assert (probes["readinessProbe"]["path"], probes["livenessProbe"]["path"]) == (
        "/health",
        "/state/version",
    )
    for service in (o for o in objects if o["kind"] == "Service"):
        [service_port] = service["spec"]["ports"]
        assert service_port["targetPort"] in ports
    monitor = one(objects, "ServiceMonitor")
    assert [e["path"] for e in monitor["spec"]["endpoints"]] == ["/metrics"]
    assert "/metrics" in routes
    pod = one(objects, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["fsGroup"] == uid  # the image's group has the user's id
    security = main["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert mounts[str(DOCKER_DATA_ROOT)] == "data"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # the only writable place off the volume


def _config_file(objects: Objects) -> tuple[str, str]:
    config_map = next(o for o in objects if o["kind"] == "ConfigMap")
    [(name, text)] = config_map["data"].items()
    return name, text


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_config_map_is_complete_so_the_service_never_rewrites_it(
    rendered: dict[str, Objects], tmp_path: Path, overlay: str
) -> None:
    objects = rendered[overlay]
    name, text = _config_file(objects)
    main = container(objects)
    assert main["args"] == ["--conf-docker", f"/etc/mentator/{name}"]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    settings = load_docker(path, data_root=tmp_path / "data", environ={})
    # A missing key would have been added by rewriting the file, which a ConfigMap refuses.
    assert path.read_text(encoding="utf-8") == text
    assert settings.warnings == ()
    requests = main["resources"]["requests"]
    if overlay == "cpu":
        assert settings.threads == math.ceil(float(requests["cpu"]))
    pod = one(objects, "StatefulSet")["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "/bin/sleep"
    # preStop, then the drain's grace, then ≤ 10 s for the cut-off answers, the server's close
    # and the engine's stop (server.py), before Kubernetes' SIGKILL.
    budget = int(pre_stop[1]) + settings.drain_grace_msec / 1000 + 10
    assert budget <= pod["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling_targets_the_statefulset_in_its_namespace(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    stateful = one(objects, "StatefulSet")
    assert "replicas" not in stateful["spec"]  # KEDA owns it
    scaled = one(objects, "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("StatefulSet", stateful["metadata"]["name"])
    namespace = stateful["metadata"]["namespace"]
    assert {o["metadata"].get("namespace") for o in objects} == {namespace}
    [trigger] = scaled["spec"]["triggers"]
    service = one(objects, "Service", "mentator")
    assert f'namespace="{namespace}"' in trigger["metadata"]["query"]
    assert f'job="{service["metadata"]["name"]}"' in trigger["metadata"]["query"]
    monitor = one(objects, "ServiceMonitor")
    selected = monitor["spec"]["selector"]["matchLabels"]
    scraped = [
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Service" and selected.items() <= o["metadata"]["labels"].items()
    ]
    assert scraped == ["mentator"]  # not the headless Service too: every pod once
    secret_refs = {
        (env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
        for env in container(objects)["env"]
        if "valueFrom" in env
    }
    credentials = monitor["spec"]["endpoints"][0]["authorization"]["credentials"]
    assert (credentials["name"], credentials["key"]) in secret_refs


def test_gpu_overlays_ask_for_their_gpu(rendered: dict[str, Objects]) -> None:
    for overlay, resource in (("nvidia", "nvidia.com/gpu"), ("amd", "amd.com/gpu")):
        main = container(rendered[overlay])
        assert main["resources"]["limits"][resource] == "1"
        pod = one(rendered[overlay], "StatefulSet")["spec"]["template"]["spec"]
        assert resource in {toleration["key"] for toleration in pod["tolerations"]}
    assert not any("gpu" in key for key in container(rendered["cpu"])["resources"]["limits"])
