"""One process at a time for work that must run once per deployment (the KPI scheduler).

Every ``urbanmim serve`` process runs the same components; a timer that *computes and writes*
(rather than serving requests) must not run N times with N processes on one PostgreSQL database:
N times the work, and N writes of the same results racing each other.

How: a session-level advisory lock (``pg_try_advisory_lock``, keyed by the job and the schema)
taken on a dedicated connection and held for as long as the process leads — the same claim as
the outbox drainer's (``postgres_outbox.py``). The job asks :meth:`Leadership.lead` before each
run: the leader checks its session is still alive (one ``SELECT 1``), the others try the lock.
When the leader dies (SIGKILL, OOM, host lost), PostgreSQL ends its session and frees the lock;
the next process to ask takes over, i.e. within one period of the job. The connection is named
``urbanmim leader <job> <schema> <pid>`` in ``pg_stat_activity``. SQLite is one process: always
the leader.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import psycopg

log = logging.getLogger(__name__)


class Leadership:
    def __init__(self, store: Any, job: str):
        self.store = store
        self.job = job
        self._conn: psycopg.AsyncConnection[Any] | None = None

    @property
    def shared(self) -> bool:
        """Several processes may share the store (PostgreSQL)."""
        return getattr(self.store, "conninfo", None) is not None

    async def lead(self) -> bool:
        """Is this process the one to run the job now? (Takes the lead if it is free.)"""
        if not self.shared:
            return True
        if self._conn is not None:
            try:
                await self._conn.execute("SELECT 1")
                return True
            except psycopg.Error:
                log.warning("%s: lost the leader's session; trying to lead again", self.job)
                await self.release()
        schema = getattr(self.store, "schema", "public")
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.store.conninfo, autocommit=True,
                application_name=f"urbanmim leader {self.job} {schema} {os.getpid()}"[:63])
        except psycopg.Error:
            log.warning("%s: cannot reach the database to take the lead", self.job, exc_info=True)
            return False
        try:
            cur = await conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (f"urbanmim:{self.job}:{schema}",))
            row = await cur.fetchone()
        except psycopg.Error:
            row = None
        if row and row[0]:
            self._conn = conn
            log.info("%s: this process (%d) leads", self.job, os.getpid())
            return True
        with contextlib.suppress(Exception):
            await conn.close()
        return False

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
