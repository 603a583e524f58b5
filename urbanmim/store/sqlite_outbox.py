"""SQLite part of notifications: the outbox written with each change, claimed by the notifier.

Mixed into ``SQLiteStore``; ``_write_outbox`` runs in the writer's transaction.
"""

from __future__ import annotations

import sqlite3

from urbanmim.store.base import OutboxRecord

SCHEMA_PART = ""


class SQLiteOutbox:
    SCHEMA_PART = SCHEMA_PART

    def _write_outbox(self, conn: sqlite3.Connection, tid: int, records: list[OutboxRecord]) -> None:
        raise NotImplementedError("notifications are not available in this store yet")
