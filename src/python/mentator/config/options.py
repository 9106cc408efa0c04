"""The 20 generation options (reference §2.3): defaults, type/range rules, parsing and merging.

One table (`OPTION_SPECS`) drives everything: the request validation messages of the API, the
"never raises" parsing used for config defaults, the template comments and the OpenAPI text.
Pure Python on purpose: the rules are tiny and the messages must match the original's wording
(`body/options/temperature must be <= 2`), which a schema library would phrase differently.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

OptionKind = Literal["number", "integer", "boolean", "string_array", "number_map"]


@dataclass(frozen=True)
class OptionSpec:
    """Type, range and meaning of one generation option."""

    key: str
    kind: OptionKind
    minimum: float | None
    maximum: float | None
    description: str

    def expected(self) -> str:
        """What a valid value looks like, phrased for config error messages."""
        if self.kind == "boolean":
            return "true or false"
        if self.kind == "string_array":
            return "an array of strings"
        if self.kind == "number_map":
            return "an object mapping strings to numbers"
        noun = "an integer" if self.kind == "integer" else "a number"
        low, high = _fmt(self.minimum), _fmt(self.maximum)
        if self.minimum is not None and self.maximum is not None:
            return f"{noun} {low}..{high}"
        if self.minimum is not None:
            return f"{noun} >= {low}"
        return noun


def _fmt(bound: float | None) -> str:
    if bound is None:
        return ""
    return str(int(bound)) if float(bound).is_integer() else str(bound)


OPTION_SPECS: tuple[OptionSpec, ...] = (
    OptionSpec("temperature", "number", 0, 2, "sampling temperature; 0 = deterministic"),
    OptionSpec(
        "topP",
        "number",
        0,
        1,
        "nucleus sampling: keep the smallest token set whose probability sum >= topP",
    ),
    OptionSpec("topK", "integer", 1, 1000, "sample only from the K most likely tokens"),
    OptionSpec("minP", "number", 0, 1, "drop tokens less likely than minP x the most likely one"),
    OptionSpec(
        "maxTokens",
        "integer",
        1,
        131072,
        "maximum number of generated tokens (output is cut when reached)",
    ),
    OptionSpec("repeatPenalty", "number", -2, 2, "penalty for repeating recent tokens; 1 = off"),
    OptionSpec(
        "repeatPenaltyNum", "integer", 0, 2048, "how many last tokens the penalties look at"
    ),
    OptionSpec(
        "presencePenalty", "number", -2, 2, "penalty for tokens that already appeared; 0 = off"
    ),
    OptionSpec(
        "frequencyPenalty",
        "number",
        -2,
        2,
        "penalty growing with how often a token appeared; 0 = off",
    ),
    OptionSpec(
        "mirostat", "integer", 0, 2, "mirostat sampling: 0 = off, 1 = mirostat, 2 = mirostat 2.0"
    ),
    OptionSpec("mirostatTau", "number", 0, 10, "mirostat target entropy"),
    OptionSpec("mirostatEta", "number", 0, 1, "mirostat learning rate"),
    OptionSpec(
        "penalizeNewline",
        "boolean",
        None,
        None,
        "accepted for compatibility, no effect: llama.cpp removed this switch (docs/hardening.md)",
    ),
    OptionSpec(
        "stopSequences", "string_array", None, None, "generation stops at any of these strings"
    ),
    OptionSpec("trimWhitespace", "boolean", None, None, "trim trailing whitespace of the answer"),
    OptionSpec("seed", "integer", 0, None, "random seed for reproducible sampling; null = random"),
    OptionSpec(
        "tokenBias", "number_map", None, None, "logit bias: token text -> bias added to its logit"
    ),
    OptionSpec(
        "evaluationPriority",
        "integer",
        0,
        10,
        "scheduling hint of the original; accepted, no effect",
    ),
    OptionSpec(
        "contextShiftSize",
        "integer",
        0,
        4096,
        "accepted for compatibility, no effect: context shifting is a llama-server process"
        " setting, not a per-request one (README, Differences)",
    ),
    OptionSpec(
        "disableContextShift",
        "boolean",
        None,
        None,
        "accepted for compatibility, no effect: context shifting is a llama-server process"
        " setting, not a per-request one (README, Differences)",
    ),
)

SPECS_BY_KEY: Mapping[str, OptionSpec] = MappingProxyType({spec.key: spec for spec in OPTION_SPECS})
OPTION_KEYS: tuple[str, ...] = tuple(spec.key for spec in OPTION_SPECS)

# `seed` has no default in either set: absent means "random".
CORE_DEFAULTS: Mapping[str, object] = MappingProxyType(
    {
        "temperature": 0.8,
        "topP": 0.9,
        "topK": 40,
        "minP": 0,
        "maxTokens": 128,
        "repeatPenalty": 1.1,
        "repeatPenaltyNum": 64,
        "presencePenalty": 0,
        "frequencyPenalty": 1.1,
        "mirostat": 0,
        "mirostatTau": 5,
        "mirostatEta": 0.1,
        "penalizeNewline": True,
        "stopSequences": [],
        "trimWhitespace": True,
        "tokenBias": {},
        "evaluationPriority": 5,
        "contextShiftSize": 0,
        "disableContextShift": False,
    }
)

JSON_DEFAULTS: Mapping[str, object] = MappingProxyType(
    {
        "temperature": 0,
        "topP": 0.1,
        "topK": 10,
        "minP": 0,
        "maxTokens": 4096,
        "repeatPenalty": 1,
        "repeatPenaltyNum": 0,
        "presencePenalty": 0,
        "frequencyPenalty": 0,
        "mirostat": 0,
        "mirostatTau": 5,
        "mirostatEta": 0.1,
        "penalizeNewline": False,
        "stopSequences": [],
        "trimWhitespace": True,
        "tokenBias": {},
        "evaluationPriority": 5,
        "contextShiftSize": 0,
        "disableContextShift": False,
    }
)


def option_problem(spec: OptionSpec, value: object) -> tuple[str, str] | None:
    """Why `value` is not valid for `spec`, or None when it is.

    Returns (sub_path, ajv_message): sub_path is "" for the option itself or "/<item>" for a bad
    array item / map value; the message uses the original's (Ajv's) wording.
    """
    if spec.kind == "boolean":
        return None if isinstance(value, bool) else ("", "must be boolean")
    if spec.kind == "string_array":
        if not isinstance(value, list):
            return ("", "must be array")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                return (f"/{index}", "must be string")
        return None
    if spec.kind == "number_map":
        if not isinstance(value, dict):
            return ("", "must be object")
        for name, bias in value.items():
            if not _is_number(bias):
                return (f"/{name}", "must be number")
        return None
    if not _is_number(value):
        return ("", f"must be {spec.kind}")
    assert isinstance(value, int | float)
    if spec.kind == "integer" and not float(value).is_integer():
        return ("", "must be integer")
    if spec.minimum is not None and value < spec.minimum:
        return ("", f"must be >= {_fmt(spec.minimum)}")
    if spec.maximum is not None and value > spec.maximum:
        return ("", f"must be <= {_fmt(spec.maximum)}")
    return None


def _is_number(value: object) -> bool:
    """A finite JSON number (bool is an int subclass in Python, but not a JSON number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _normalise(spec: OptionSpec, value: object) -> object:
    """A valid value in its canonical Python type (5.0 for an integer option becomes 5)."""
    if spec.kind == "integer" and isinstance(value, float):
        return int(value)
    if spec.kind in ("string_array", "number_map"):
        return copy.deepcopy(value)
    return value


def validate_options(raw: object, *, path: str = "body/options") -> list[str]:
    """Request-validation messages for an `options` object, one per bad key, in key order.

    `null` counts as "not given" (a fix: the original rejected it). Unknown keys are not errors
    (the original kept and ignored them). An empty list means valid.
    """
    if not isinstance(raw, dict):
        return [f"{path} must be object"]
    messages: list[str] = []
    for spec in OPTION_SPECS:
        value = raw.get(spec.key)
        if value is None:
            continue
        problem = option_problem(spec, value)
        if problem is not None:
            sub_path, message = problem
            messages.append(f"{path}/{spec.key}{sub_path} {message}")
    return messages


def parse_options(
    raw: Mapping[str, object], *, fill: bool, defaults: Mapping[str, object]
) -> dict[str, object]:
    """Known options of `raw`, cleaned; never raises (the original library's rule).

    With `fill`, every key absent or invalid gets its value from `defaults` (keys missing from
    `defaults` stay absent); without it, such keys are dropped. `seed` is kept only when it is a
    valid integer >= 0 (from `raw`, else from `defaults` when filling). Unknown keys are dropped.
    """
    source: Mapping[str, object] = raw if isinstance(raw, Mapping) else {}
    result: dict[str, object] = {}
    for spec in OPTION_SPECS:
        value = source.get(spec.key)
        if value is not None and option_problem(spec, value) is None:
            result[spec.key] = _normalise(spec, value)
        elif fill:
            default = defaults.get(spec.key)
            if default is not None and option_problem(spec, default) is None:
                result[spec.key] = _normalise(spec, default)
    return result


def merge_options(
    config_defaults: Mapping[str, object], request_options: Mapping[str, object] | None
) -> dict[str, object]:
    """Options for one request: the valid keys the client sent, over the config defaults.

    FIX of reference §8.3: the original's request validation filled every key the client did not
    send with the library's *core* defaults, which then overrode `defaultOptions` (send only
    `temperature` and `maxTokens` silently became 128). Here a partial `options` object changes
    only the keys it names.
    """
    merged = parse_options(config_defaults, fill=False, defaults={})
    if request_options:
        merged.update(parse_options(request_options, fill=False, defaults={}))
    return merged


def option_descriptions() -> dict[str, str]:
    """key -> one-line description, for OpenAPI text."""
    return {spec.key: spec.description for spec in OPTION_SPECS}
