from libs.db.errors import DatabaseUnavailable
from libs.db.pool import (
    CONNECTION_ERRORS,
    Connection,
    Pool,
    connect,
    create_pool,
)
from libs.db.tags import rows_affected

__all__ = [
    "CONNECTION_ERRORS",
    "Connection",
    "DatabaseUnavailable",
    "Pool",
    "connect",
    "create_pool",
    "rows_affected",
]
