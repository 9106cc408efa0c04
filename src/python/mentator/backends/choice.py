"""The vocabulary shared by detection (`hardware/`) and the engine (`engine/`): a GPU device, and
the backend choice with the reason for it and for every tier skipped above it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mentator.backends import catalog
from mentator.backends.canary import CanaryReport


@dataclass(frozen=True)
class GpuDevice:
    name: str
    total_mb: int | None
    used_mb: int | None

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "totalMb": self.total_mb, "usedMb": self.used_mb}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GpuDevice:
        return cls(
            str(data["name"]), _int_or_none(data.get("totalMb")), _int_or_none(data.get("usedMb"))
        )


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class BackendChoice:
    """What the engine children run on, and why."""

    backend: str  # a row name of `catalog.BACKENDS`
    reason: str
    # tier → why it was not used, for every tier above the chosen one (and a GPU tier that
    # failed at model load time and fell back to the CPU).
    skipped: dict[str, str] = field(default_factory=dict)
    devices: list[GpuDevice] = field(default_factory=list)
    cpu_variant: str | None = None
    # Extra environment of every child: GGML_BACKEND_PATH, LD_LIBRARY_PATH (empty for the CPU).
    env: dict[str, str] = field(default_factory=dict)
    # Lower GPU tiers that are usable too, in order: where a model load goes when this backend
    # fails to start it (the CPU comes after them all).
    fallbacks: list[BackendChoice] = field(default_factory=list)
    # What the start-up canary measured and decided (`backends.canary`); None: it did not run.
    canary: CanaryReport | None = None

    @property
    def is_gpu(self) -> bool:
        return catalog.backend(self.backend).is_gpu

    def to_json(self) -> dict[str, object]:
        """The one rendering of the decision, used everywhere it is shown or handed on:
        ``--detect-hardware`` prints it (the entrypoint passes it to the service, `from_json`),
        ``/state`` shows it as ``backend`` (the stat page reads it there) and ``/health`` names
        its ``name``. Every key is always present.

        ``name`` is the catalog row; ``backend`` repeats it under the key the decision JSON had
        first (hand-written decisions in ``MENTATOR_BACKEND_DECISION`` use it). ``fallbacks`` are
        the lower GPU tiers a failed model load goes to, each rendered the same way. ``canary``
        is the start-up check of every tier (`backends.canary.CanaryReport.to_json`) or null.
        """
        return {
            "name": self.backend,
            "backend": self.backend,
            "cpuVariant": self.cpu_variant,
            "reason": self.reason,
            "skipped": dict(self.skipped),
            "devices": [device.to_json() for device in self.devices],
            "env": dict(self.env),
            "fallbacks": [fallback.to_json() for fallback in self.fallbacks],
            "canary": self.canary.to_json() if self.canary is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackendChoice:
        """The inverse of `to_json` (``name`` or ``backend`` names the row; either is enough);
        `ValueError` when ``data`` is not such an object."""
        try:
            name = str(data["name"] if "name" in data else data["backend"])
            if "backend" in data and str(data["backend"]) != name:
                raise ValueError(f"name {name!r} and backend {data['backend']!r} differ")
            if name not in catalog.BY_NAME:
                raise ValueError(f"unknown backend {name!r}")
            variant = data.get("cpuVariant")
            canary = data.get("canary")
            return cls(
                backend=name,
                reason=str(data["reason"]),
                skipped={str(k): str(v) for k, v in dict(data.get("skipped") or {}).items()},
                devices=[GpuDevice.from_json(d) for d in data.get("devices") or []],
                cpu_variant=str(variant) if variant is not None else None,
                env={str(k): str(v) for k, v in dict(data.get("env") or {}).items()},
                fallbacks=[cls.from_json(item) for item in data.get("fallbacks") or []],
                canary=CanaryReport.from_json(canary) if canary else None,
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a backend choice: {error}") from error

    def gpu_info(self) -> dict[str, object]:
        """The /state `gpuInfo` object (VRAM fields are null on the CPU)."""
        first = self.devices[0] if self.devices else None
        return {
            "type": self.backend,
            "device": first.name if first else None,
            "totalVramMb": first.total_mb if first else None,
            "usedVramMb": first.used_mb if first else None,
        }

    def with_canary(self, report: CanaryReport, cpu_variant: str | None = None) -> BackendChoice:
        """This decision (detection's: this tier, then its usable ``fallbacks``) after the canary:
        its chosen tier becomes the backend, every tier it did not choose is in ``skipped`` with
        the canary's words for it, and only tiers it found correct remain as fallbacks."""
        by_name = {self.backend: self, **{f.backend: f for f in self.fallbacks}}
        summaries = {tier.name: tier.summary() for tier in report.tiers}
        correct = {tier.name for tier in report.tiers if tier.usable}
        base = by_name.get(report.chosen)
        skipped = dict(self.skipped)
        for name in by_name:
            if name != report.chosen:
                skipped[name] = f"canary: {summaries.get(name, 'not checked')}"
        if base is None:  # the CPU
            return BackendChoice(
                backend=catalog.CPU.name,
                reason=f"canary: {report.reason}",
                skipped={k: v for k, v in skipped.items() if k != catalog.CPU.name},
                cpu_variant=self.cpu_variant or cpu_variant,
                canary=report,
            )
        lower = [
            replace(tier, fallbacks=[], skipped={})
            for tier in [self, *self.fallbacks]
            if tier.backend in correct and tier.backend != base.backend
        ]
        return replace(
            base,
            reason=f"{base.reason}; canary: {report.reason}",
            skipped=skipped,
            fallbacks=lower,
            canary=report,
        )

    def fallback_to_cpu(self, why: str) -> BackendChoice:
        """The CPU choice after this GPU backend failed at run time; the reason is kept."""
        return replace(
            self,
            backend=catalog.CPU.name,
            reason=f"fell back to CPU: {why}",
            skipped={**self.skipped, self.backend: why},
            devices=[],
            env={},
            fallbacks=[],
        )

    def fallback_to(self, lower: BackendChoice, why: str) -> BackendChoice:
        """``lower`` (one of `fallbacks`) after this backend failed at run time."""
        return replace(
            lower,
            reason=f"fell back to {lower.backend}: {why}; {lower.reason}",
            skipped={**self.skipped, self.backend: why},
            fallbacks=self.fallbacks[self.fallbacks.index(lower) + 1 :],
        )
