"""The backend decision handed from the container's entrypoint to the service, so a container
start detects the hardware once, with one algorithm.

`docker-entrypoint.sh` runs ``--detect-hardware`` (this package's `select_backend`), logs the
decision and passes its JSON on in ``MENTATOR_BACKEND_DECISION``; the service takes it instead of
probing again. A value that does not parse is ignored (the service then detects by itself).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from mentator.backends.choice import BackendChoice

DECISION_ENV = "MENTATOR_BACKEND_DECISION"


def decided_backend(environ: Mapping[str, str]) -> BackendChoice | None:
    """The entrypoint's decision, or None when there is none (or it is unreadable)."""
    text = environ.get(DECISION_ENV, "").strip()
    if not text:
        return None
    try:
        data = json.loads(text)
        return BackendChoice.from_json(data) if isinstance(data, dict) else None
    except ValueError:
        return None
