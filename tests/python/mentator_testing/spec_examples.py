"""Examples of the original's behaviour verified in the spec (reference.md), shared by the tests
of each layer that must reproduce them."""

from __future__ import annotations

# reference §2.7, `POST /helper/prompt/fromstring`: a prompt file and the exact JSON answer
# (compact separators, key order as the original serialises it).
PROMPT_FILE = """ignored preamble
$$begin
$$llm
model=abc.gguf
gpulayer=5
$$options
temperature=0.5
topK=abc
$$system
S
$$user
U line
$$jsonresponse
{"type":"string"}
$$segment=mentator-llm-service
{"useGrammar":false}
$$end
trailing text"""

PROMPT_FILE_JSON = (
    '[{"llm":{"model":"abc.gguf","gpulayer":5},"options":{"temperature":0.5},"system":"S",'
    '"user":"U line","jsonresponse":"{\\"type\\":\\"string\\"}",'
    '"segment":{"mentator-llm-service":"{\\"useGrammar\\":false}"}}]'
)
