"""Why a redaction could not finish: the caller fails closed (nothing unredacted is kept)."""

from __future__ import annotations


class RedactionTimeout(Exception):
    """Redaction passed its deadline before it finished."""
