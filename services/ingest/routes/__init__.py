"""Route modules of the ingest API; each exposes `register(app)`."""

from __future__ import annotations

from types import ModuleType

from services.ingest.routes import (
    console,
    docs,
    health,
    jobs,
    media,
    ops,
    search,
    session,
    users,
    webhooks,
)

ROUTE_MODULES: tuple[ModuleType, ...] = (
    jobs,
    health,
    ops,
    webhooks,
    docs,
    search,
    session,
    media,
    users,
    console,
)
