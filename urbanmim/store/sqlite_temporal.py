"""SQLite part of the temporal history: attribute instances and their query/aggregation.

Mixed into ``SQLiteStore``; ``_write_temporal`` runs in the writer's transaction.
"""

from __future__ import annotations

import sqlite3

from urbanmim.store.base import TemporalRecord

SCHEMA_PART = ""


class SQLiteTemporal:
    SCHEMA_PART = SCHEMA_PART

    def _write_temporal(self, conn: sqlite3.Connection, tid: int, records: list[TemporalRecord]) -> None:
        raise NotImplementedError("temporal history is not available in this store yet")
