from libs.db.errors import DatabaseUnavailable
from libs.db.pool import (
    CONNECTION_ERRORS,
    UNAVAILABLE,
    create_pool,
    execute,
    fetch,
    fetchrow,
    transaction,
)

__all__ = [
    "CONNECTION_ERRORS",
    "UNAVAILABLE",
    "DatabaseUnavailable",
    "create_pool",
    "execute",
    "fetch",
    "fetchrow",
    "transaction",
]
