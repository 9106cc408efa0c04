"""JSON text as JavaScript's ``JSON.stringify`` writes it: compact, UTF-8 kept as is.

The original's log lines, chat-log rows and server-sent events all carry this form."""

from __future__ import annotations

import json
from typing import Any


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
