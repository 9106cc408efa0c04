"""The configuration keys: one row per key, and everything else is driven from this table.

`loader.py` checks a file against the rows (type, range, required, docker-forced), `template.py`
writes the commented templates from them (`--conf-gen`, the docker file), and `settings.Settings`
has one field per row (``field``). Adding a key is one row here plus the `Settings` field and the
README's config table. The generation options inside ``defaultOptions`` have their own table,
`options.OPTION_SPECS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mentator.backends import catalog
from mentator.backends.layout import ENGINE_DIR_ENV, resolve_engine_dir
from mentator.config.settings import LogLevel

# integer: a whole number in [minimum, maximum]; string: a non-empty string; path: a non-empty
# string naming a file or folder (relative = from the current directory); options: the
# generation options object; log: the `log` section (`LOG_KEYS`); level: one of LOG_LEVELS;
# boolean: true or false; strings: a list of non-empty strings (a tuple in Settings); url: an
# http(s) URL with a host and nothing after the path (no query, fragment or user); backend:
# "auto" or a row name of `backends.catalog.BACKENDS` (`BACKEND_VALUES`).
KeyKind = Literal[
    "integer", "string", "path", "options", "log", "level", "boolean", "strings", "url", "backend"
]
# In --conf-docker mode a key is either read from the file ("file") or fixed by the image
# ("forced": a value in the file only earns a warning).
DockerRule = Literal["file", "forced"]

LOG_LEVELS: tuple[LogLevel, ...] = ("error", "debug", "trace")
DEFAULT_LOG_LEVEL: LogLevel = "debug"
DEFAULT_LIVE_DAY = 30
DOCKER_DATA_ROOT = Path("/opt/mentator-llm-service/data")
DOCKER_DB_FILE_NAME = "mentator-llm-service.db"
DEFAULT_PORT = 19777
DEFAULT_HOST = "0.0.0.0"
API_KEYS_ENV = "MENTATOR_API_KEYS"
BACKEND_VALUES: tuple[str, ...] = ("auto", *catalog.BY_NAME)


@dataclass(frozen=True)
class ConfigKey:
    """One configuration key.

    ``default`` is the value when the key is absent or null; ``example`` is what the full
    template shows (a placeholder for required paths); ``required`` keys must be present in a
    ``--conf-use`` file (``required_hint`` says what to write). ``forced`` gives the value the
    Docker image fixes, from the data folder and the environment (None: read from the file);
    ``forced_note`` says it in words when the value alone would not.
    """

    key: str
    field: str
    kind: KeyKind
    help: str
    default: object = None
    example: object = None
    minimum: int | None = None
    maximum: int | None = None
    required: bool = False
    required_hint: str = ""
    forced: Callable[[Path, Mapping[str, str]], object] | None = None
    forced_note: str | None = None

    @property
    def docker(self) -> DockerRule:
        return "forced" if self.forced is not None else "file"

    def expected(self) -> str:
        """What a valid value looks like, phrased for error messages."""
        if self.kind == "integer":
            return f"an integer {self.minimum}..{self.maximum}"
        if self.kind == "boolean":
            return "true or false"
        if self.kind == "level":
            return " or ".join(f'"{name}"' for name in LOG_LEVELS)
        if self.kind == "backend":
            return " or ".join(f'"{name}"' for name in BACKEND_VALUES)
        if self.kind in ("options", "log"):
            return "an object { ... }"
        if self.kind == "strings":
            return 'a list of non-empty strings, e.g. ["key-1"]'
        if self.kind == "url":
            return 'an http(s) URL with a host and no query, e.g. "http://10.0.0.2:19777"'

        return "a non-empty string"

    def template_value(self) -> object:
        return self.example if self.example is not None else self.default


def _range(low: int, high: int) -> str:
    return f"an integer {low}..{high}"


PARALLEL_RANGE = (1, 64)
QUEUE_LIMIT_RANGE = (0, 100_000)
THREADS_RANGE = (1, 1024)
LIVE_DAY_RANGE = (1, 365)
DRAIN_RANGE = (0, 3_600_000)
MAX_LOADED_RANGE = (1, 64)
BUDGET_MB_RANGE = (0, 16_777_216)  # 16 TiB
KEEP_ALIVE_RANGE = (-1, 31_536_000)  # a year
SHADOW_PERCENT_RANGE = (1, 100)
SHADOW_QUEUE_RANGE = (1, 100_000)

CONFIG_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey(
        "port",
        "port",
        "integer",
        f"HTTP port ({_range(1, 65535)})",
        default=DEFAULT_PORT,
        minimum=1,
        maximum=65535,
        required=True,
        required_hint="the HTTP port, e.g. 19777",
        forced=lambda _root, _env: DEFAULT_PORT,
    ),
    ConfigKey(
        "host",
        "host",
        "string",
        "address to listen on; 0.0.0.0 = every interface",
        default=DEFAULT_HOST,
        forced=lambda _root, _env: DEFAULT_HOST,
    ),
    ConfigKey(
        "modelDir",
        "model_dir",
        "path",
        "folder scanned recursively for *.gguf models"
        " (relative paths start at the current directory)",
        example="path/to/models",
        required=True,
        required_hint='the folder with *.gguf models, e.g. "path/to/models"',
        forced=lambda root, _env: root / "models",
    ),
    ConfigKey(
        "dbFile",
        "db_file",
        "path",
        "SQLite file for logs (folders are created)",
        example="path/to/mentator-llm-service.db",
        required=True,
        required_hint='the SQLite log file, e.g. "path/to/mentator-llm-service.db"',
        forced=lambda root, _env: root / DOCKER_DB_FILE_NAME,
    ),
    ConfigKey(
        "toolDir",
        "tool_dir",
        "path",
        "folder with *.tool.txt server-side tools; null = no tools",
        forced=lambda root, _env: root / "tools",
    ),
    ConfigKey(
        "toolEnvDir",
        "tool_env_dir",
        "path",
        "folder with *.toolenv.txt tool environments; null = none",
        forced=lambda root, _env: root / "toolsenv",
    ),
    ConfigKey(
        "toolTimeoutMsec",
        "tool_timeout_msec",
        "integer",
        "wall-clock limit of one server-side tool call, in milliseconds (100..3600000)",
        default=30000,
        minimum=100,
        maximum=3600000,
    ),
    ConfigKey(
        "engineDir",
        "engine_dir",
        "path",
        "folder holding llama-server (cpu build in its root, cuda/, rocm/, vulkan/ beside);"
        f" the environment variable {ENGINE_DIR_ENV} overrides it;"
        " null = use only that variable",
        # The image sets the variable; the file never names the engine.
        forced=lambda _root, env: resolve_engine_dir(None, env),
        forced_note=f"the {ENGINE_DIR_ENV} environment variable",
    ),
    ConfigKey(
        "backend",
        "backend",
        "backend",
        "engine backend: auto = the fastest one the start-up canary finds correct; cuda, rocm,"
        " vulkan or cpu force that tier when it loads (the canary still runs and warns when it"
        " is wrong or slower; README: How the backend is chosen)",
        default="auto",
    ),
    ConfigKey(
        "parallel",
        "parallel",
        "integer",
        "requests llama-server runs at once (its slots;" f" {_range(*PARALLEL_RANGE)})",
        default=4,
        minimum=PARALLEL_RANGE[0],
        maximum=PARALLEL_RANGE[1],
    ),
    ConfigKey(
        "queueLimit",
        "queue_limit",
        "integer",
        "requests that may wait for a slot; more get HTTP 503" f" ({_range(*QUEUE_LIMIT_RANGE)})",
        default=64,
        minimum=QUEUE_LIMIT_RANGE[0],
        maximum=QUEUE_LIMIT_RANGE[1],
    ),
    ConfigKey(
        "maxLoadedModels",
        "max_loaded_models",
        "integer",
        "models kept in memory at once, each in its own llama-server; one more is loaded after"
        " the least recently used idle one is unloaded; 1 = the original's one model"
        f" ({_range(*MAX_LOADED_RANGE)})",
        default=3,
        minimum=MAX_LOADED_RANGE[0],
        maximum=MAX_LOADED_RANGE[1],
    ),
    ConfigKey(
        "memoryBudgetMb",
        "memory_budget_mb",
        "integer",
        "RAM the resident models may use together, by their estimate (weights + KV cache for"
        " the context); a model that does not fit even alone is refused with HTTP 503; 0 = no"
        f" fixed budget, only the memory measured free at each load ({_range(*BUDGET_MB_RANGE)})",
        default=0,
        minimum=BUDGET_MB_RANGE[0],
        maximum=BUDGET_MB_RANGE[1],
    ),
    ConfigKey(
        "vramBudgetMb",
        "vram_budget_mb",
        "integer",
        "on a GPU backend, VRAM per GPU the resident models may use together, by their estimate;"
        f" 0 = each GPU's free memory at the start ({_range(*BUDGET_MB_RANGE)})",
        default=0,
        minimum=BUDGET_MB_RANGE[0],
        maximum=BUDGET_MB_RANGE[1],
    ),
    ConfigKey(
        "keepAliveSec",
        "keep_alive_sec",
        "integer",
        "seconds an idle model stays loaded when the request does not say (its keepAlive);"
        f" 0 = unload when its requests are done, -1 = until evicted ({_range(*KEEP_ALIVE_RANGE)})",
        default=-1,
        minimum=KEEP_ALIVE_RANGE[0],
        maximum=KEEP_ALIVE_RANGE[1],
    ),
    ConfigKey(
        "swapGrouping",
        "swap_grouping",
        "boolean",
        "when the limits force a swap, it waits while the resident models are serving"
        " requests (up to 10 s) so that the requests for the missing model ride one load"
        " together, and the requests that were waiting for a model use it before it is evicted"
        " for a later one (anti-thrash; no request waits more than one swap beyond its turn);"
        " false = plain least-recently-used order",
        default=True,
    ),
    ConfigKey(
        "warmSwapMb",
        "warm_swap_mb",
        "integer",
        "warm swaps: disk (MB, in kv-cache/ beside the database) for the KV cache of evicted"
        " models' conversations, restored when the model is loaded again (no new prefill); not"
        " for sliding-window or hybrid models; files older than log.liveDay are deleted;"
        f" 0 = off ({_range(*BUDGET_MB_RANGE)})",
        default=0,
        minimum=BUDGET_MB_RANGE[0],
        maximum=BUDGET_MB_RANGE[1],
    ),
    ConfigKey(
        "pinnedModels",
        "pinned_models",
        "strings",
        "models loaded at the start and never unloaded (count towards maxLoadedModels);"
        " [] = none",
        default=(),
        example=[],
    ),
    ConfigKey(
        "drainGraceMsec",
        "drain_grace_msec",
        "integer",
        "on SIGTERM, how long requests in flight (streams included) may still run while new ones"
        " get HTTP 503 and /health says draining; what still runs after it gets an error"
        f" (milliseconds, {_range(*DRAIN_RANGE)}; keep it below the orchestrator's stop timeout)",
        default=25000,
        minimum=DRAIN_RANGE[0],
        maximum=DRAIN_RANGE[1],
    ),
    ConfigKey(
        "drainNoticeMsec",
        "drain_notice_msec",
        "integer",
        "on SIGTERM, keep the port open at least this long, answering /health 503 draining, even"
        " with nothing in flight, so a load balancer's health check sees it before connections"
        f" are refused (milliseconds, {_range(*DRAIN_RANGE)}; capped by drainGraceMsec)",
        default=0,
        minimum=DRAIN_RANGE[0],
        maximum=DRAIN_RANGE[1],
    ),
    ConfigKey(
        "compactJson",
        "compact_json",
        "boolean",
        "JSON answers under a grammar (a schema, tool calls) are compact: no whitespace between"
        " tokens, so a small model cannot spend its token budget on newlines; false = one"
        " space, or a newline and up to 20 spaces/tabs, may stand between tokens"
        " (docs/structured-output.md)",
        default=True,
    ),
    ConfigKey(
        "grammarRepeatPenalty",
        "grammar_repeat_penalty",
        "boolean",
        "under a grammar, when neither the request nor defaultOptions set a repeat penalty, use"
        " repeatPenalty 1.15 over the last 64 tokens, so a model does not loop until its token"
        " limit; off by default: it also punishes copying from the prompt (the README's example"
        " then answers another name and age; docs/structured-output.md)",
        default=False,
    ),
    ConfigKey(
        "cancelOnDisconnect",
        "cancel_on_disconnect",
        "boolean",
        "true = whole answers are read from llama-server as a stream, so a caller who leaves (or"
        " a durationMsec timeout) stops the generation at its next token, always; false (the"
        " default) = asked in one piece, 2-4 % more tokens/s on a CPU-bound machine: llama-server"
        " stops such a generation about a second after its caller left while no other answer"
        " streams from the same model, otherwise only at its token limit (README Performance)",
        default=False,
    ),
    ConfigKey(
        "grammarDry",
        "grammar_dry",
        "boolean",
        "under a grammar, the DRY sampler (multiplier 0.8, base 1.75, allowed length 2, over the"
        " last 1024 tokens): a token that would extend an already seen sequence of tokens is"
        " penalised, more the longer the repeat, so a model does not loop until its token limit;"
        " copying a short name or number from the question is not penalised; it changes answers"
        " (docs/structured-output.md); false = off",
        default=True,
    ),
    ConfigKey(
        "cutOffRetry",
        "cut_off_retry",
        "boolean",
        "a JSON answer (a schema, tool calls; not streamed) cut off at the token limit is asked"
        " once more, within the same time limit, under the schema with strings, arrays and"
        " objects without their own bound held to the loosest bounds whose longest answer fits"
        " the budget (48 characters, 8 items, 4 other keys, down to 8, 1, 0) and values of any"
        " type to short scalars; the answer is validated against the original schema (else a"
        " 400), the usage counts both generations; false = the cut-off answer is refused at once"
        " (docs/structured-output.md)",
        default=True,
    ),
    ConfigKey(
        "threads",
        "threads",
        "integer",
        "CPU threads for llama-server; null = let llama-server decide"
        f" ({_range(*THREADS_RANGE)})",
        minimum=THREADS_RANGE[0],
        maximum=THREADS_RANGE[1],
    ),
    ConfigKey(
        "apiKeys",
        "api_keys",
        "strings",
        "API keys: when any is set (here or in the environment variable"
        f" {API_KEYS_ENV}, comma-separated), every route but /health, /state/version and the"
        " web pages needs 'Authorization: Bearer <key>' or 'x-api-key: <key>'; [] = no key"
        " (docs/security.md)",
        default=(),
        example=[],
    ),
    ConfigKey(
        "shadowUrl",
        "shadow_url",
        "url",
        "shadow traffic: a second service (a candidate model or engine) that gets a copy of a"
        " sampled share of the completions (/prompt, /v1/chat/completions, /v1/completions)"
        " after they are answered; the answers are compared and counted (/metrics, the stat"
        " page, the shadow table); the caller's request is never delayed, changed or failed;"
        " null = off (README: Shadow traffic)",
    ),
    ConfigKey(
        "shadowPercent",
        "shadow_percent",
        "integer",
        "shadow traffic: the share of completions copied, in percent"
        f" ({_range(*SHADOW_PERCENT_RANGE)})",
        default=10,
        minimum=SHADOW_PERCENT_RANGE[0],
        maximum=SHADOW_PERCENT_RANGE[1],
    ),
    ConfigKey(
        "shadowQueue",
        "shadow_queue",
        "integer",
        "shadow traffic: copies that may wait to be sent; when full a copy is dropped and"
        f" counted ({_range(*SHADOW_QUEUE_RANGE)})",
        default=100,
        minimum=SHADOW_QUEUE_RANGE[0],
        maximum=SHADOW_QUEUE_RANGE[1],
    ),
    ConfigKey(
        "shadowApiKey",
        "shadow_api_key",
        "string",
        "shadow traffic: the API key the second service needs (sent as 'Authorization:"
        " Bearer'); null = none",
    ),
    ConfigKey(
        "defaultOptions",
        "default_options",
        "options",
        "generation options used when a request does not name them"
        " (a request's options are merged over these)",
        required=True,
        required_hint="an object of generation options, {} for the defaults",
    ),
    ConfigKey(
        "log",
        "log",
        "log",
        "logging to the console and to the database",
        required=True,
        required_hint='{"level": "debug", "liveDay": 30, "savePrompt": false}',
    ),
)

# The `log` section; all three are required in a --conf-use file that has the section.
LOG_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey(
        "level",
        "level",
        "level",
        '"error" = errors only, "debug" = errors and debug, "trace" = everything',
        default=DEFAULT_LOG_LEVEL,
        required=True,
        required_hint='"error", "debug" or "trace"',
    ),
    ConfigKey(
        "liveDay",
        "live_day",
        "integer",
        "days to keep core and chat log rows in the database (an integer 1..365)",
        default=DEFAULT_LIVE_DAY,
        minimum=LIVE_DAY_RANGE[0],
        maximum=LIVE_DAY_RANGE[1],
        required=True,
        required_hint="days, 1..365",
    ),
    ConfigKey(
        "savePrompt",
        "save_prompt",
        "boolean",
        "also store successful /prompt exchanges in the chat log (errors are always stored)",
        default=False,
        required=True,
        required_hint="true or false",
    ),
)

KEYS_BY_NAME: dict[str, ConfigKey] = {row.key: row for row in CONFIG_KEYS}
DOCKER_FILE_KEYS: tuple[ConfigKey, ...] = tuple(row for row in CONFIG_KEYS if row.forced is None)
