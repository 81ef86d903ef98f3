"""Console roles, lowest first: a viewer reads, lists, searches and listens; a supervisor
also uploads, reruns, deletes, renames speakers and edits categories; an admin also manages
webhooks, notifications and the tenant's users. `operator` is no role of a user's own: it is
an admin with the operator flag (every tenant; dead letters), the level some routes need."""

from __future__ import annotations

from typing import Literal, get_args

Role = Literal["viewer", "supervisor", "admin"]
Level = Literal["viewer", "supervisor", "admin", "operator"]
ROLES: tuple[Role, ...] = get_args(Role)
RANK: dict[Level, int] = {"viewer": 1, "supervisor": 2, "admin": 3, "operator": 4}


def level_of(role: Role, *, operator: bool) -> Level:
    """What a user may do: their role, or `operator` for an operator admin."""
    return "operator" if operator and role == "admin" else role


def allows(have: Level, need: Level) -> bool:
    return RANK[have] >= RANK[need]
