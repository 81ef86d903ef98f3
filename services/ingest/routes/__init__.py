"""Route modules of the ingest API; each exposes `register(app)`."""

from __future__ import annotations

from types import ModuleType

from services.ingest.routes import (
    call_insights,
    categories,
    console,
    docs,
    health,
    insights,
    jobs,
    media,
    notifications,
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
    categories,
    insights,
    call_insights,
    session,
    media,
    users,
    notifications,
    console,
)
