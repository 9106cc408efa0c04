"""What a request may use: the typed parts of one running service, built by `server.py` (the
composition root) and handed to the HTTP layer, whose dependencies (`api/deps.py`) give each
route only the parts it needs. No HTTP and no wiring here.

``engine`` and ``backend`` are None until the startup finished (the service is "starting");
``database``/``corelog``/``chatlog`` are None when the database could not be opened (``health``
says why). ``drain`` says whether the service is shutting down (`inference.drain`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mentator.applog import AppLogger, wall_clock_ms
from mentator.backends.choice import BackendChoice
from mentator.config.settings import Settings
from mentator.engine.ports import EngineManagerPort
from mentator.hardware.vram import VramMeter
from mentator.inference.drain import Drain
from mentator.inference.shadowing import ShadowPort
from mentator.inference.tripwire import SpeedTripwire
from mentator.models.registry import ModelRegistry
from mentator.scheduling import RequestQueue
from mentator.storage.chatlog import ChatLogStore
from mentator.storage.corelog import CoreLogStore
from mentator.storage.database import Database
from mentator.storage.health import StorageHealth
from mentator.tools.registry import ToolRegistry


@dataclass
class ServiceContext:
    """The parts of one service (one per process, or per test)."""

    settings: Settings
    # The concrete logger (the composition root builds it): it can start writing to a database
    # opened late (`server.reopen_database`); what it hands on is a `LoggerProtocol`.
    logger: AppLogger
    registry: ModelRegistry
    queue: RequestQueue
    health: StorageHealth = field(default_factory=StorageHealth)
    database: Database | None = None
    corelog: CoreLogStore | None = None
    chatlog: ChatLogStore | None = None
    backend: BackendChoice | None = None
    engine: EngineManagerPort | None = None
    tools: ToolRegistry | None = None  # server-side tools (toolDir / toolEnvDir)
    started_ms: int = field(default_factory=wall_clock_ms)
    # Why the background startup (scan, backend selection) failed; /health then says "failed".
    startup_error: str | None = None
    clock_ms: Callable[[], int] = wall_clock_ms
    # Live VRAM use for /state, briefly cached (one per service, shared by its request threads).
    vram: VramMeter = field(default_factory=VramMeter)
    # The shutdown drain: the server begins it on SIGTERM; /health and the use-cases read it.
    drain: Drain = field(default_factory=Drain)
    # Shadow traffic (``shadowUrl``): built by the server; None when off.
    shadow: ShadowPort | None = None
    # The run-time tripwire: the chosen backend far slower than its canary measured.
    speed: SpeedTripwire = field(default_factory=SpeedTripwire)

    @property
    def ready(self) -> bool:
        """The first model scan is done and the engine manager exists."""
        return self.engine is not None and self.registry.scanned

    @property
    def db_error(self) -> str | None:
        """Why the database could not be opened (None when it was)."""
        return self.health.open_error

    def current_backend(self) -> BackendChoice | None:
        """The backend in use: the engine's (it may have fallen back to the CPU), else the
        selection's."""
        return self.engine.backend if self.engine is not None else self.backend
