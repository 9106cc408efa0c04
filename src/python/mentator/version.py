"""The service version.

The one source is `MENTATOR_VERSION` in `build-support/prelude.py` (a Pants BUILD prelude): the
image tags use it, the `pex_binary` injects it into the PEX's environment and the test targets
pass it to pytest. Running from a bare source tree (outside Pants) reports `0.0.0+source`.
"""

import os

VERSION: str = os.environ.get("MENTATOR_VERSION") or "0.0.0+source"
