"""Function calling on any GGUF model: tools offered in the prompt, calls forced by a grammar.

llama-server follows a chat template's native tool format only for templates it knows, and
small models (SmolLM2) have none, so the service does it itself, the same way for every model
(design: docs/tools.md):

* The offered functions are described in a system message (`tool_instructions`): their names,
  descriptions and parameter schemas, and the one answer shape a call has.
* A call is exactly the JSON object ``{"name": <one offered name>, "arguments": <that tool's
  parameters>}``; several calls at once (``parallel``) are a JSON array of them. The grammar is
  built from that JSON Schema by the service's own converter (`schema.gbnf`): an ``anyOf`` with
  one branch per tool, ``name`` a ``const`` — so the name is always one offered and the
  arguments always follow that tool's schema (any model, any template).
* ``required`` / a named function: the output grammar is only the call (named: one branch).
  ``auto``: the grammar is "a call, or free text that does not start with ``{`` or ``[``", so the
  first character decides, and a streamed text answer can be passed on at once.
* Earlier calls and their results in the conversation (assistant ``tool_calls``, ``tool``
  messages) are rewritten as plain text turns (`plain_history`), since many templates reject
  those roles; the model sees its call as the JSON it wrote and the result as a user turn.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mentator.engine.ports import Message
from mentator.inference.errors import AnswerRejected, InvalidRequest
from mentator.schema.gbnf import SchemaToGrammarError, Whitespace, schema_to_gbnf

ToolMode = Literal["auto", "required", "named"]

# Free text in `auto` mode: anything that does not open a JSON object or array (or nothing).
_FREE_TEXT_RULES = "free-text ::= ( [^{\\[] [^\\x00]* )?\n"


@dataclass(frozen=True)
class FunctionTool:
    """One function offered to the model (OpenAI's ``tools[i].function``)."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})


@dataclass(frozen=True)
class ToolCall:
    call_id: str
    name: str
    arguments: Any

    def to_openai(self, index: int | None = None) -> dict[str, Any]:
        call: dict[str, Any] = {
            "id": self.call_id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }
        if index is not None:
            call["index"] = index
        return call


@dataclass(frozen=True)
class ToolOffer:
    """The functions a request offers and how the model must use them."""

    tools: tuple[FunctionTool, ...]
    mode: ToolMode
    parallel: bool
    forced: str | None = None  # the named function (mode "named")
    whitespace: Whitespace = "compact"  # between the call's JSON tokens (`schema.gbnf`)

    def offered(self) -> tuple[FunctionTool, ...]:
        if self.mode == "named":
            return tuple(tool for tool in self.tools if tool.name == self.forced)
        return self.tools


def _rewrite_refs(value: Any, prefix: str) -> Any:
    """A tool's local ``$ref``s, renamed so they resolve inside the combined schema."""
    if isinstance(value, list):
        return [_rewrite_refs(item, prefix) for item in value]
    if not isinstance(value, dict):
        return value
    copied: dict[str, Any] = {}
    for key, item in value.items():
        if key in ("$defs", "definitions"):
            continue
        if key == "$ref" and isinstance(item, str) and item.startswith("#"):
            copied[key] = _ref_target(item, prefix)
        else:
            copied[key] = _rewrite_refs(item, prefix)
    return copied


def _ref_target(ref: str, prefix: str) -> str:
    for section in ("#/$defs/", "#/definitions/"):
        if ref.startswith(section):
            return f"#/$defs/{prefix}{ref[len(section) :]}"
    if ref in ("#", "#/"):
        return f"#/$defs/{prefix}"
    raise InvalidRequest(
        f"tools: the $ref {ref!r} of function {prefix[:-1]!r} is not supported in tool "
        "parameters; use #, #/$defs/<name> or #/definitions/<name>"
    )


def call_schema(offer: ToolOffer) -> dict[str, Any]:
    """The JSON Schema of the model's answer when it calls (one call, or an array)."""
    branches: list[dict[str, Any]] = []
    definitions: dict[str, Any] = {}
    for tool in offer.offered():
        prefix = f"{tool.name}-"
        parameters = _rewrite_refs(dict(tool.parameters), prefix)
        definitions[tool.name] = parameters  # target of "#" inside the tool's schema
        for section in ("$defs", "definitions"):
            for name, sub in (tool.parameters.get(section) or {}).items():
                definitions[f"{prefix}{name}"] = _rewrite_refs(sub, prefix)
        branches.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool.name}, "arguments": parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    one: dict[str, Any] = {"anyOf": branches}
    schema: dict[str, Any] = (
        {"type": "array", "items": one, "minItems": 1} if offer.parallel else dict(one)
    )
    if definitions:
        schema["$defs"] = definitions
    return schema


def call_grammar(offer: ToolOffer) -> str:
    """GBNF for the model's answer: the call(s) only, or (``auto``) a call or free text."""
    try:
        grammar = schema_to_gbnf(call_schema(offer), offer.whitespace)
    except SchemaToGrammarError as error:
        raise InvalidRequest(f"tools: on create llama grammar: {error}") from error
    if offer.mode != "auto":
        return grammar
    # The converter names its start rule `root`; nothing refers to it (refs were renamed).
    lines = grammar.splitlines()
    renamed = [
        "tool-call ::= " + line[len("root ::= ") :] if line.startswith("root ::= ") else line
        for line in lines
    ]
    return "root ::= tool-call | free-text\n" + _FREE_TEXT_RULES + "\n".join(renamed) + "\n"


def tool_instructions(offer: ToolOffer) -> str:
    """The system text that tells the model what it may call and how a call looks."""
    described = [
        {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
        for tool in offer.offered()
    ]
    shape = '{"name": "<function name>", "arguments": {<arguments>}}'
    lines = [
        "You can call these functions (their arguments follow the JSON Schema given):",
        json.dumps(described, ensure_ascii=False),
    ]
    if offer.parallel:
        lines.append(f"To call functions, answer only with a JSON array of calls: [{shape}, ...].")
    else:
        lines.append(f"To call a function, answer only with a JSON object: {shape}.")
    if offer.mode == "named":
        lines.append(f'Call the function "{offer.forced}" now.')
    elif offer.mode == "required":
        lines.append("Call a function now.")
    else:
        lines.append("If no function is needed, answer the user in plain text.")
    return "\n".join(lines)


def offer_messages(offer: ToolOffer, messages: Sequence[Message]) -> list[Message]:
    """The conversation with the tool instructions added to (or as) the system message."""
    instructions = tool_instructions(offer)
    result: list[Message] = [dict(message) for message in messages]
    if result and result[0].get("role") == "system":
        system = f"{result[0].get('content') or ''}\n\n{instructions}".lstrip()
        return [{"role": "system", "content": system}, *result[1:]]
    return [{"role": "system", "content": instructions}, *result]


def plain_history(messages: Sequence[Mapping[str, Any]]) -> list[Message]:
    """OpenAI messages with ``tool_calls`` / role ``tool`` as plain turns any template takes.

    Each message must already have a text ``content`` (None for none)."""
    names: dict[str, str] = {}
    result: list[Message] = []
    for message in messages:
        role = str(message.get("role"))
        content = message.get("content") or ""
        calls = message.get("tool_calls") or []
        if role == "assistant" and calls:
            written = []
            for call in calls:
                function = call.get("function") or {}
                names[str(call.get("id"))] = str(function.get("name"))
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except ValueError:
                    arguments = function.get("arguments")
                written.append({"name": function.get("name"), "arguments": arguments})
            text = json.dumps(written[0] if len(written) == 1 else written, ensure_ascii=False)
            result.append({"role": "assistant", "content": f"{content}\n{text}".strip()})
        elif role == "tool":
            name = names.get(str(message.get("tool_call_id")), "the function")
            result.append({"role": "user", "content": f"Result of {name}: {content}"})
        else:
            result.append({"role": role, "content": content})
    return result


def looks_like_call(text: str) -> bool:
    """In ``auto`` mode the grammar lets a call start only with ``{`` or ``[``."""
    return text.lstrip()[:1] in ("{", "[")


def parse_calls(text: str) -> list[ToolCall]:
    """The calls in a grammar-constrained answer (an object or an array of them)."""
    try:
        data = json.loads(text)
    except ValueError as error:
        # Only an answer cut short (max_tokens) gets here: the grammar allows nothing else.
        # (A whole answer is stopped earlier, in `Completions.chat`, naming the limit's value.)
        raise AnswerRejected(
            "the model's function call was cut off at the token limit (max_tokens) before it "
            f"was complete ({error}); raise max_tokens"
        ) from error
    items = data if isinstance(data, list) else [data]
    return [
        ToolCall(f"call_{uuid.uuid4().hex[:24]}", str(item["name"]), item.get("arguments", {}))
        for item in items
        if isinstance(item, dict) and "name" in item
    ]
