"""Generation options reach the real engine and take effect (issue 15, item 13).

llama-server ignores a request field it does not know, so a misspelt mapping (`top_p` → `topp`)
would pass every test that only looks at our side. Here the engine's own `/slots` report shows
the sampling parameters it used, and two options are checked by what they do to the answer: a
banned word never starts the answer, and a stop sequence cuts it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from mentator_testing.service_process import RunningService

PROMPT = "Write one sentence about the sea."
# Values away from both the llama-server defaults and ours, so a dropped field shows.
SENT = {
    "temperature": 0.55,
    "topP": 0.77,
    "topK": 17,
    "minP": 0.03,
    "maxTokens": 9,
    "repeatPenalty": 1.07,
    "repeatPenaltyNum": 33,
    "presencePenalty": 0.2,
    "frequencyPenalty": 0.3,
    "mirostat": 2,
    "mirostatTau": 4.5,
    "mirostatEta": 0.12,
    "seed": 1234,
    "stopSequences": ["zzzz"],
}
# Our option → the field in llama-server's /slots "params" (build 11669).
SLOT_FIELDS = {
    "temperature": "temperature",
    "topP": "top_p",
    "topK": "top_k",
    "minP": "min_p",
    "maxTokens": "n_predict",
    "repeatPenalty": "repeat_penalty",
    "repeatPenaltyNum": "repeat_last_n",
    "presencePenalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
    "mirostat": "mirostat",
    "mirostatTau": "mirostat_tau",
    "mirostatEta": "mirostat_eta",
    "seed": "seed",
}  # `stop` and `logit_bias` are not in the report: checked by their effect below


def prompt(client: httpx.Client, model: str, options: dict[str, Any]) -> httpx.Response:
    return client.post(
        "/prompt",
        json={
            "model": model,
            "durationMsec": 120_000,
            "message": {"user": PROMPT},
            "options": options,
        },
    )


def engine_url(service: RunningService) -> str:
    """The private address of the llama-server child, from its command line."""
    (pid,) = service.engine_children()
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return f"http://{args[args.index('--host') + 1]}:{args[args.index('--port') + 1]}"


def test_sampling_options_reach_the_engine(
    client: httpx.Client, service: RunningService, model_name: str
) -> None:
    reply = prompt(client, model_name, SENT)
    assert reply.status_code == 200, reply.text
    slots = httpx.get(f"{engine_url(service)}/slots", timeout=10).json()
    used = [slot["params"] for slot in slots if slot.get("params", {}).get("n_predict") == 9]
    assert used, f"no slot ran our request: {slots}"
    params = used[0]
    for ours, theirs in SLOT_FIELDS.items():
        got = params[theirs]
        if isinstance(SENT[ours], float):
            assert abs(got - SENT[ours]) < 1e-6, (ours, theirs, got)
        else:
            assert got == SENT[ours], (ours, theirs, got)


def greedy(client: httpx.Client, model: str, **options: Any) -> str:
    reply = prompt(client, model, {"temperature": 0, "topK": 1, "maxTokens": 24, **options})
    assert reply.status_code == 200, reply.text
    text = reply.json()["result"]["data"]
    assert isinstance(text, str)
    return text


def test_token_bias_bans_a_word(client: httpx.Client, model_name: str) -> None:
    plain = greedy(client, model_name)
    first_word = plain.split()[0]
    banned = {first_word: -100, " " + first_word: -100}
    biased = greedy(client, model_name, tokenBias=banned)
    assert not biased.startswith(first_word), (plain, biased)


def test_stop_sequence_cuts_the_answer(client: httpx.Client, model_name: str) -> None:
    plain = greedy(client, model_name)
    words = plain.split()
    assert len(words) >= 4, plain
    stop_word = words[3]
    cut = greedy(client, model_name, stopSequences=[stop_word])
    assert stop_word not in cut, (plain, cut)
    assert plain.startswith(cut.strip()) and len(cut.strip()) < len(plain), (plain, cut)
