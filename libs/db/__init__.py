from libs.db.errors import DatabaseUnavailable, DuplicateRow, MissingTable, StatementFailed
from libs.db.pool import (
    CONNECTION_ERRORS,
    Connection,
    Pool,
    connect,
    create_pool,
)
from libs.db.statements import StatementShape, check_statement
from libs.db.tags import rows_affected

__all__ = [
    "CONNECTION_ERRORS",
    "Connection",
    "DatabaseUnavailable",
    "DuplicateRow",
    "MissingTable",
    "Pool",
    "StatementFailed",
    "StatementShape",
    "check_statement",
    "connect",
    "create_pool",
    "rows_affected",
]
