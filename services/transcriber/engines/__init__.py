"""Engine selection: the configured default, and the offline engine that is always available."""

from __future__ import annotations

from dataclasses import dataclass

from services.transcriber.engines.base import (
    Engine,
    EngineAuthError,
    EngineError,
    EngineOptions,
    OutputShape,
    PermanentEngineError,
    Timestamps,
    TransientEngineError,
    UploadLimits,
)

OFFLINE_MODEL = "offline"


@dataclass(frozen=True, slots=True)
class Engines:
    default: Engine
    offline: Engine

    def for_model(self, model: str | None) -> Engine:
        # "offline" always means the local engine; other model names go to the default engine,
        # which ignores them if it is itself offline (no key configured).
        if model == OFFLINE_MODEL:
            return self.offline
        return self.default


__all__ = [
    "OFFLINE_MODEL",
    "Engine",
    "EngineAuthError",
    "EngineError",
    "EngineOptions",
    "Engines",
    "OutputShape",
    "PermanentEngineError",
    "Timestamps",
    "TransientEngineError",
    "UploadLimits",
]
