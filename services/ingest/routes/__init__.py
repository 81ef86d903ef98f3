"""Route modules of the ingest API; each exposes `register(app)`."""

from __future__ import annotations

from types import ModuleType

from services.ingest.routes import docs, health, jobs, notifications, ops, search, webhooks

ROUTE_MODULES: tuple[ModuleType, ...] = (jobs, health, ops, webhooks, docs, search, notifications)
