"""Storage of call records, spans and rollups, behind one interface with SQLite and PostgreSQL backends.

store = open_store("sqlite:////var/lib/litelens/litelens.db")
store.migrate()
project = store.create_project("default")
store.write(project, [record], [])
rows, cursor = store.list_calls(project, CallFilter(model="gpt-4o-mini"), limit=50)
"""

from __future__ import annotations

from litelens.server.store.base import (
    AGGREGATE_GROUPS,
    SORT_KEYS,
    CallFilter,
    InvalidCursor,
    Store,
    StoreUnavailable,
    merge_records,
    open_store,
)

__all__ = [
    "AGGREGATE_GROUPS",
    "SORT_KEYS",
    "CallFilter",
    "InvalidCursor",
    "Store",
    "StoreUnavailable",
    "merge_records",
    "open_store",
]
