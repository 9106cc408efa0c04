"""A rolling restart under load, for real: deploy/compose/ (three replicas behind HAProxy) started
from its compose.yaml, a bounded load through HAProxy, and deploy/compose/roll.sh run meanwhile.

Shared by the e2e test (tests/python/mentator_e2e/test_rolling_restart.py, which asserts) and
the benchmark (bench/rolling_restart.py, which prints). Everything runs on the host's network,
as compose.yaml says, so every request goes to the loopback.

No `docker compose` is needed: `ComposeStack` runs the services of compose.yaml through the
Docker API with the settings the file gives them, and refuses a key it does not know, so the file
under test is the file users run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import jsonschema
import yaml
from docker.errors import NotFound
from docker.models.containers import Container

COMPOSE_DIR = Path("deploy/compose")
ROLL_SCRIPT = COMPOSE_DIR / "roll.sh"
API_URL = "http://127.0.0.1:19777"
STATS_URL = "http://127.0.0.1:8404/"
# The host ports the stack takes: HAProxy's API and stats, the replicas' (replica-N.conf.jsonc).
PORTS = (19777, 8404, 19781, 19782, 19783)
BACKEND = "mentator"
# Marks what a run created, so that a run after a crashed one may remove it (and nothing else).
LABEL = "mentator.rolling-restart"

COLOUR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
    "required": ["colour"],
    "additionalProperties": False,
}

# The compose keys ComposeStack translates; any other key in compose.yaml is an error.
_KNOWN_KEYS = frozenset(
    {
        "image",
        "container_name",
        "command",
        "environment",
        "volumes",
        "network_mode",
        "restart",
        "stop_grace_period",
        "healthcheck",
        "read_only",
        "cap_drop",
        "security_opt",
        "depends_on",
    }
)
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def substitute(text: str, env: Mapping[str, str]) -> str:
    """Compose's `${NAME}` and `${NAME:-default}` (empty counts as unset for `:-`)."""

    def value(match: re.Match[str]) -> str:
        name, default = match[1], match[2]
        given = env.get(name, "")
        return given if given or default is None else default

    return _VARIABLE.sub(value, text)


def _seconds(value: str) -> int:
    found = re.fullmatch(r"(\d+)s", value)
    if not found:
        raise ValueError(f"stop_grace_period {value!r}: only whole seconds (e.g. 30s) are read")
    return int(found[1])


@dataclass(frozen=True)
class ServiceSpec:
    """One service of compose.yaml as Docker API arguments."""

    name: str
    container_name: str
    image: str
    run: dict[str, Any]
    volumes: tuple[str, ...]  # named volumes it mounts (compose names)
    depends_on: tuple[str, ...]


def read_compose(
    compose_file: Path, env: Mapping[str, str], project: str
) -> tuple[ServiceSpec, ...]:
    """The services of `compose_file`, dependencies first, ready for `containers.run`."""
    document = yaml.safe_load(compose_file.read_text(encoding="utf-8"))
    specs: dict[str, ServiceSpec] = {}
    for name, service in document["services"].items():
        unknown = set(service) - _KNOWN_KEYS
        if unknown:
            raise ValueError(
                f"{compose_file}: service {name} uses {sorted(unknown)}, which this test's"
                " translation of compose does not know: teach it (tests/python/mentator_e2e/"
                "rolling.py) what compose does with them"
            )
        run: dict[str, Any] = {
            "name": service.get("container_name", f"{project}-{name}"),
            "detach": True,
            "labels": {LABEL: project},
            "environment": {
                key: substitute(str(value), env)
                for key, value in (service.get("environment") or {}).items()
            },
        }
        if "command" in service:
            run["command"] = list(service["command"])
        for key in ("network_mode", "read_only", "cap_drop", "security_opt"):
            if key in service:
                run[key] = service[key]
        if "restart" in service:
            run["restart_policy"] = {"Name": service["restart"]}
        # stop_grace_period is read by `docker compose stop` only (and the Docker API of
        # docker-py's run() has no field for it): roll.sh's `docker stop --time` names the same
        # seconds itself, which tests/python/deploy/test_compose.py checks.
        _seconds(service.get("stop_grace_period", "0s"))
        if "healthcheck" in service:
            run["healthcheck"] = {"test": list(service["healthcheck"]["test"])}
        mounts: dict[str, dict[str, str]] = {}
        named: list[str] = []
        for entry in service.get("volumes", []):
            source, target, *mode = str(entry).split(":")
            if source.startswith(("./", "/")):
                source = str((compose_file.parent / source).resolve())
            else:
                named.append(source)
                source = f"{project}_{source}"
            mounts[source] = {"bind": target, "mode": mode[0] if mode else "rw"}
        run["volumes"] = mounts
        specs[name] = ServiceSpec(
            name=name,
            container_name=run["name"],
            image=substitute(str(service["image"]), env),
            run=run,
            volumes=tuple(named),
            depends_on=tuple(service.get("depends_on", ())),
        )
    ordered: list[ServiceSpec] = []
    while len(ordered) < len(specs):
        ready = [
            s
            for s in specs.values()
            if s not in ordered and all(specs[d] in ordered for d in s.depends_on)
        ]
        if not ready:
            raise ValueError(f"{compose_file}: depends_on has a cycle")
        ordered.extend(ready)
    return tuple(ordered)


@dataclass
class ComposeStack:
    """The running containers of compose.yaml; `down` removes them and their volumes."""

    client: docker.DockerClient
    project: str
    specs: tuple[ServiceSpec, ...]
    containers: dict[str, Container] = field(default_factory=dict)

    @classmethod
    @contextlib.contextmanager
    def up(
        cls, client: docker.DockerClient, env: Mapping[str, str], project: str
    ) -> Iterator[ComposeStack]:
        stack = cls(client, project, read_compose(COMPOSE_DIR / "compose.yaml", env, project))
        taken = [port for port in PORTS if not _port_is_free(port)]
        if taken:
            raise AssertionError(
                f"127.0.0.1 ports {taken} are taken by other processes; the stack runs on the"
                " host's network on fixed ports (compose.yaml). Stop what listens there first."
            )
        try:
            stack._remove_leftovers()
            for spec in stack.specs:
                for volume in spec.volumes:
                    client.volumes.create(f"{project}_{volume}", labels={LABEL: project})
                stack.containers[spec.name] = client.containers.run(spec.image, **spec.run)
            yield stack
        finally:
            stack.down()

    def _remove_leftovers(self) -> None:
        """Containers with our names: ours from an earlier run are removed, others refused."""
        for spec in self.specs:
            try:
                old = self.client.containers.get(spec.container_name)
            except NotFound:
                continue
            if LABEL not in old.labels:
                raise AssertionError(
                    f"a container named {spec.container_name} exists and was not made by this"
                    " run's code (compose.yaml names its containers): remove it first"
                )
            old.remove(force=True)
        for volume in self.client.volumes.list(filters={"label": LABEL}):
            with contextlib.suppress(docker.errors.APIError):
                volume.remove(force=True)

    def replicas(self) -> list[str]:
        return [s.container_name for s in self.specs if s.name.startswith("mentator-")]

    def logs(self) -> str:
        blocks = []
        for name, container in self.containers.items():
            try:
                text = container.logs().decode("utf-8", "replace")
            except NotFound:
                text = "(container gone)\n"
            blocks.append(f"--- {name} ---\n{text}")
        return "".join(blocks)

    def started_at(self) -> dict[str, str]:
        """Each replica's last start time, as Docker writes it."""
        times = {}
        for name in self.replicas():
            container = self.client.containers.get(name)
            times[name] = str(container.attrs["State"]["StartedAt"])
        return times

    def down(self) -> None:
        for container in reversed(list(self.containers.values())):
            with contextlib.suppress(NotFound):
                container.remove(force=True)
        for spec in self.specs:
            for volume in spec.volumes:
                with contextlib.suppress(NotFound):
                    self.client.volumes.get(f"{self.project}_{volume}").remove(force=True)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def haproxy_servers(stats_url: str = STATS_URL) -> dict[str, dict[str, str]]:
    """HAProxy's rows of the backend, by server name (and BACKEND), from its stats CSV."""
    text = httpx.get(f"{stats_url};csv", timeout=5).text.lstrip("# ")
    return {
        row["svname"]: row for row in csv.DictReader(io.StringIO(text)) if row["pxname"] == BACKEND
    }


def wait_all_up(stack: ComposeStack, timeout_s: float) -> float:
    """Wait until HAProxy has every replica UP; the seconds it took. A replica that exits
    (restart: unless-stopped starts it again) fails at once, with the logs."""
    names = stack.replicas()
    started = time.monotonic()
    states: dict[str, str] = {}
    while time.monotonic() - started < timeout_s:
        for name in names:
            state = stack.client.containers.get(name).attrs["State"]
            if state["Status"] == "exited" or int(state.get("RestartCount") or 0) > 0:
                raise AssertionError(f"replica {name} exited: {state}\n{stack.logs()}")
        with contextlib.suppress(httpx.HTTPError):
            states = {n: r["status"] for n, r in haproxy_servers().items() if n in names}
            if len(states) == len(names) and set(states.values()) == {"UP"}:
                return time.monotonic() - started
        time.sleep(1)
    raise AssertionError(
        f"HAProxy did not have every replica UP within {timeout_s:.0f} s: {states}\n{stack.logs()}"
    )


@dataclass(frozen=True)
class Outcome:
    """One request of the load: what it was, when, and what went wrong (None: nothing)."""

    kind: str  # "prompt" (schema-constrained /prompt) or "stream" (/v1/chat/completions)
    started: float
    ended: float
    error: str | None
    truncated: bool = False  # a stream that did not end with its finish and [DONE]
    tokens: int = 0

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def ask_prompt(http: httpx.Client, model: str) -> tuple[str | None, bool, int]:
    response = http.post(
        "/prompt",
        json={
            "model": model,
            # The service's own deadline: long, so that a slow (shared) host is not a failure.
            "durationMsec": 300000,
            "message": {"user": "Pick one colour of the sky. Answer in JSON."},
            "options": {"temperature": 0, "maxTokens": 24},
            "format": {"useGrammar": True, "jsonSchema": COLOUR_SCHEMA},
        },
    )
    if response.status_code != 200:
        return f"/prompt: HTTP {response.status_code} {response.text[:300]}", False, 0
    try:
        jsonschema.validate(response.json()["result"]["data"], COLOUR_SCHEMA)
    except (KeyError, ValueError, jsonschema.ValidationError) as err:
        return f"/prompt: answer off the schema: {err}: {response.text[:300]}", False, 0
    return None, False, 0


def ask_stream(http: httpx.Client, model: str) -> tuple[str | None, bool, int]:
    """A streamed chat completion; whole only with a finish_reason, then [DONE] last."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Name three colours, one per line."}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 24,
        "temperature": 0,
    }
    finish, done, tokens, text = None, False, 0, ""
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            response.read()
            return f"stream: HTTP {response.status_code} {response.text[:300]}", False, 0
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if done:
                return f"stream: data after [DONE]: {data[:200]}", True, tokens
            if data == "[DONE]":
                done = True
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                return f"stream: error event {chunk['error']}", True, tokens
            for choice in chunk.get("choices", []):
                text += (choice.get("delta") or {}).get("content") or ""
                finish = choice.get("finish_reason") or finish
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    if not (done and finish and text):
        return f"stream: cut short (finish {finish!r}, [DONE] {done}, text {text!r})", True, tokens
    return None, False, tokens


@dataclass
class RollRun:
    """What one rolling restart under load gave."""

    outcomes: list[Outcome]
    clients: int
    load_started: float
    roll_started: float
    roll_ended: float
    load_ended: float
    rounds: int  # how many times roll.sh restarted every replica
    roll_rc: int  # roll.sh's exit status (of its last round)
    roll_output: str
    retries: int = 0  # HAProxy's count of requests it sent again (wretr)
    redispatches: int = 0  # ... to another server (wredis)
    in_flight_at_sigterm: list[int] = field(default_factory=list)

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is not None]

    def phase(self, name: str) -> tuple[list[Outcome], float]:
        """The requests of a phase and its length. "steady": ended before the roll began;
        "roll": running at any time during it; "after": begun after it ended."""
        if name == "steady":
            chosen = [o for o in self.outcomes if o.ended <= self.roll_started]
            return chosen, self.roll_started - self.load_started
        if name == "roll":
            chosen = [
                o
                for o in self.outcomes
                if o.started < self.roll_ended and o.ended > self.roll_started
            ]
            return chosen, self.roll_ended - self.roll_started
        chosen = [o for o in self.outcomes if o.started >= self.roll_ended]
        return chosen, self.load_ended - self.roll_ended


def _p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def report_lines(run: RollRun) -> list[str]:
    """The numbers, one line each: totals, then per phase throughput and latency."""
    failed = run.failed()
    streams = [o for o in run.outcomes if o.kind == "stream"]
    lines = [
        f"requests: {len(run.outcomes)} from {run.clients} clients"
        f" ({len(run.outcomes) - len(streams)} schema-constrained /prompt,"
        f" {len(streams)} streamed /v1/chat/completions)",
        f"failed: {len(failed)}; truncated streams: {sum(o.truncated for o in run.outcomes)}",
        f"roll: {run.rounds} round(s) of roll.sh in {run.roll_ended - run.roll_started:.1f} s"
        f" (exit {run.roll_rc}), {len(run.in_flight_at_sigterm)} SIGTERMs;"
        f" in flight at each SIGTERM: {run.in_flight_at_sigterm};"
        f" HAProxy retries {run.retries}, redispatches {run.redispatches}",
    ]
    for name in ("steady", "roll", "after"):
        chosen, seconds = run.phase(name)
        # Throughput counts the requests that ended inside the phase's window.
        start, end = {
            "steady": (run.load_started, run.roll_started),
            "roll": (run.roll_started, run.roll_ended),
            "after": (run.roll_ended, run.load_ended),
        }[name]
        ended = [o for o in run.outcomes if start < o.ended <= end]
        tokens = sum(o.tokens for o in ended)
        latency = sorted(o.seconds for o in chosen)
        if not latency or seconds <= 0:
            lines.append(f"{name}: no requests")
            continue
        lines.append(
            f"{name}: {seconds:.1f} s, {len(ended) / seconds:.2f} requests/s,"
            f" {tokens / seconds:.1f} streamed tokens/s; latency of its {len(chosen)} requests"
            f" p50 {statistics.median(latency):.2f} s, p95 {_p95(latency):.2f} s,"
            f" max {latency[-1]:.2f} s"
        )
    for outcome in failed[:10]:
        lines.append(
            f"  failed {outcome.kind} at +{outcome.started - run.load_started:.1f} s:"
            f" {outcome.error}"
        )
    return lines


class _Load:
    """`clients` threads sending requests through HAProxy until told to stop (bounded)."""

    def __init__(self, model: str, clients: int, max_requests: int) -> None:
        self.model = model
        self.clients = clients
        self.max_requests = max_requests
        self.outcomes: list[Outcome] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._sent = 0
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=180)

    def exhausted(self) -> bool:
        with self._lock:
            return self._sent >= self.max_requests

    def done_since(self, moment: float) -> int:
        with self._lock:
            return sum(1 for o in self.outcomes if o.ended > moment)

    def _take(self) -> bool:
        with self._lock:
            if self.stop.is_set() or self._sent >= self.max_requests:
                return False
            self._sent += 1
            return True

    def _client(self, index: int) -> None:
        kinds = (ask_prompt, ask_stream)
        turn = index
        with httpx.Client(base_url=API_URL, timeout=360) as http:
            while self._take():
                ask = kinds[turn % 2]
                turn += 1
                started = time.monotonic()
                try:
                    error, truncated, tokens = ask(http, self.model)
                except (httpx.HTTPError, ValueError) as err:
                    error, truncated, tokens = f"{type(err).__name__}: {err}", ask is ask_stream, 0
                outcome = Outcome(
                    "prompt" if ask is ask_prompt else "stream",
                    started,
                    time.monotonic(),
                    error,
                    truncated,
                    tokens,
                )
                with self._lock:
                    self.outcomes.append(outcome)


def model_name(wait_s: float = 120) -> str:
    """The first model the service lists, asked through HAProxy. Until HAProxy has seen a
    replica healthy it answers 503 with its own HTML page, so this asks again for ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            reply = httpx.get(f"{API_URL}/v1/models", timeout=30)
            if reply.status_code == 200:
                return str(reply.json()["data"][0]["id"])
            problem = f"HTTP {reply.status_code}: {reply.text[:200]}"
        except httpx.HTTPError as error:
            problem = str(error)
        if time.monotonic() > deadline:
            raise AssertionError(f"/v1/models through HAProxy: {problem}")
        time.sleep(1)


def warm_up(model: str, replicas: int) -> None:
    """Two requests per replica first (leastconn spreads them): the first loads the model."""

    def ask() -> None:
        with httpx.Client(base_url=API_URL, timeout=180) as http:
            ask_prompt(http, model)

    threads = [threading.Thread(target=ask) for _ in range(replicas * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _roll_env() -> dict[str, str]:
    """roll.sh needs docker and curl: the distribution's client first (it matches its daemon),
    whatever PATH the caller had (Pants runs tests with none)."""
    path = "/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/bin"
    env = {"PATH": f"{path}:{os.environ['PATH']}" if os.environ.get("PATH") else path}
    if os.environ.get("DOCKER_HOST"):
        env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    return env


def _in_flight_at_sigterm(logs: str) -> list[int]:
    found = re.findall(r"DRAIN: shutting down;.*? for (\d+) request\(s\) in flight", logs)
    return [int(n) for n in found]


def roll_under_load(
    stack: ComposeStack,
    *,
    clients: int = 8,
    steady_requests: int = 60,
    after_requests: int = 16,
    min_requests: int = 300,
    max_rounds: int = 20,
    max_requests: int = 3000,
    max_seconds: float = 1200,
) -> RollRun:
    """Load through HAProxy. Once `steady_requests` are done, roll.sh restarts the replicas,
    round after round, until `min_requests - after_requests` are done (at least one round);
    then the load goes on for `after_requests` more. Bounded: never more than `max_rounds`,
    `max_requests` or `max_seconds` (a round that fails ends the rolls)."""
    model = model_name()
    warm_up(model, len(stack.replicas()))
    before = haproxy_servers()["BACKEND"]
    load = _Load(model, clients, max_requests)
    deadline = time.monotonic() + max_seconds
    outputs: list[str] = []
    rc = 0
    load_started = time.monotonic()
    load.start()
    try:
        while load.done_since(0) < steady_requests and time.monotonic() < deadline:
            time.sleep(0.2)
        roll_started = time.monotonic()
        for _ in range(max_rounds):
            roll = subprocess.run(
                ["/bin/sh", str(ROLL_SCRIPT), *stack.replicas()],
                env=_roll_env(),
                capture_output=True,
                text=True,
                timeout=max(60.0, deadline - time.monotonic()),
                check=False,
            )
            outputs.append(roll.stdout + roll.stderr)
            rc = roll.returncode
            if rc != 0 or load.done_since(0) >= min_requests - after_requests:
                break
            if load.exhausted() or time.monotonic() >= deadline:
                break
        roll_ended = time.monotonic()
        while time.monotonic() < deadline and not load.exhausted():
            if load.done_since(roll_ended) >= after_requests:
                break
            time.sleep(0.2)
    finally:
        load.join()
    load_ended = time.monotonic()
    after = haproxy_servers()["BACKEND"]
    outcomes = sorted(load.outcomes, key=lambda o: o.started)
    return RollRun(
        outcomes=outcomes,
        clients=clients,
        load_started=load_started,
        roll_started=roll_started,
        roll_ended=roll_ended,
        load_ended=load_ended,
        rounds=len(outputs),
        roll_rc=rc,
        roll_output="".join(outputs),
        retries=int(after["wretr"] or 0) - int(before["wretr"] or 0),
        redispatches=int(after["wredis"] or 0) - int(before["wredis"] or 0),
        in_flight_at_sigterm=_in_flight_at_sigterm(stack.logs()),
    )
