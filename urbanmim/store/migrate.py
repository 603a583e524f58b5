"""``urbanmim db upgrade`` and ``urbanmim db migrate-from``: schema versions, and SQLite -> PostgreSQL.

``migrate-from`` copies everything a SQLite store holds that a PostgreSQL one must hold to
be the same broker: entities (with their index rows), the temporal history (temporal
entities, every instance — deleted markers included — and the hour buckets), subscriptions
with their delivery counters, and hosted contexts. It reads the SQLite tables directly
(read-only, so it is safe on a file a stopped server left behind) and writes with upserts:

* **idempotent** — an entity, subscription or context is ``INSERT ... ON CONFLICT DO
  UPDATE``; a temporal entity's instances and buckets are replaced as a whole in one
  transaction. Running it twice gives the same database; an interrupted run is finished
  by running it again.
* **instance ids are kept** (``urn:ngsi-ld:Instance:<n>`` is visible to clients): rows keep
  their SQLite ``iid`` and the sequence is moved past the largest. The target should be
  empty or the result of an earlier run of the same migration (a clash is an error,
  never a silent overwrite of unrelated history).
* not copied: the notification outbox (stop the SQLite server after its notifier drained;
  periodic and new notifications start again from the PostgreSQL side).

Progress is shown with ``rich`` (already used for the demo loader's bar), per table.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

BATCH = 500


def _sqlite_path(source: str) -> str:
    path = source[len("sqlite:///"):] if source.startswith("sqlite:///") else source
    if not Path(path).is_file():
        raise SystemExit(f"urbanmim: no SQLite file at {path}")
    return path


def _rows(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    cur = conn.execute(sql, args)
    while True:
        chunk = cur.fetchmany(BATCH)
        if not chunk:
            return
        yield from chunk


def _has(conn: sqlite3.Connection, table: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name=?", (table,)).fetchone() is not None


def _count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]) if _has(conn, table) else 0


def migrate_from(source: str, target: str, *, progress: bool = True) -> dict[str, int]:
    """Copy a SQLite store into a PostgreSQL one (migrated first); returns rows copied per kind."""
    import psycopg
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from urbanmim.store.migrations import parse_url, upgrade
    from urbanmim.store.postgres import _INDEX_ONLY, _index_params
    src = sqlite3.connect(f"file:{_sqlite_path(source)}?mode=ro", uri=True)
    upgrade(target)
    conninfo, schema = parse_url(target)
    dst = psycopg.connect(conninfo, autocommit=True, options=f"-c search_path={schema},public")
    counts = {"tenants": 0, "entities": 0, "temporal_entities": 0, "instances": 0, "subscriptions": 0,
              "contexts": 0}
    terms = {tid: iri for tid, iri in src.execute("SELECT term_id, iri FROM terms")} if _has(src, "terms") else {}
    tenant_map: dict[int, int] = {}
    for old, name in src.execute("SELECT tid, name FROM tenants"):
        row = dst.execute("INSERT INTO tenants(name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET name=excluded.name "
                          "RETURNING tid", (name,)).fetchone()
        assert row is not None
        tenant_map[old] = int(row[0])
        counts["tenants"] += 1
    columns = [TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not progress, transient=False) as bar:
        # ---- entities: state + index rows, BATCH per transaction
        task = bar.add_task("entities", total=_count(src, "entities"))
        batch: list[tuple[int, bytes]] = []

        def flush_entities() -> None:
            with dst.transaction():
                for tid, doc in batch:
                    ent = orjson.loads(doc)
                    got = dst.execute("INSERT INTO entities(tid, id, doc) VALUES (%s, %s, %s) ON CONFLICT (tid, id) "
                                      "DO UPDATE SET doc=excluded.doc RETURNING rid", (tid, ent["id"], doc)).fetchone()
                    assert got is not None
                    dst.execute(_INDEX_ONLY, _index_params(tid, int(got[0]), ent))
            bar.advance(task, len(batch))
            counts["entities"] += len(batch)
            batch.clear()
        for tid, doc in _rows(src, "SELECT tid, doc FROM entities ORDER BY rid"):
            batch.append((tenant_map[tid], bytes(doc)))
            if len(batch) >= BATCH:
                flush_entities()
        if batch:
            flush_entities()

        # ---- temporal history: one transaction per temporal entity (replace its rows)
        if _has(src, "tentities"):
            task = bar.add_task("temporal history", total=_count(src, "tinstances"))
            for teid_old, tid_old, eid, doc in _rows(src, "SELECT teid, tid, id, doc FROM tentities ORDER BY teid"):
                tid = tenant_map[tid_old]
                with dst.transaction():
                    got = dst.execute("INSERT INTO tentities(tid, id, doc) VALUES (%s, %s, %s) ON CONFLICT "
                                      "(tid, id) DO UPDATE SET doc=excluded.doc RETURNING teid",
                                      (tid, eid, bytes(doc))).fetchone()
                    assert got is not None
                    teid = int(got[0])
                    dst.execute("DELETE FROM tinstances WHERE teid=%s", (teid,))
                    dst.execute("DELETE FROM tbuckets WHERE teid=%s", (teid,))
                    raw_rows = src.execute("SELECT iid, attr_id, ds, ts, created_at, modified_at, deleted_at, num, "
                                           "doc FROM tinstances WHERE teid=? ORDER BY iid", (teid_old,))
                    inst = [(iid, tid, teid, terms[a], ds, ts, c, m, d, num, bytes(raw))
                            for iid, a, ds, ts, c, m, d, num, raw in raw_rows]
                    with dst.cursor() as cur:
                        cur.executemany("INSERT INTO tinstances(iid, tid, teid, attr, ds, ts, created_at, modified_at, "
                                        "deleted_at, num, doc) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", inst)
                        cur.executemany(
                            "INSERT INTO tbuckets(teid, attr, ds, hour, cnt, ncnt, sum, sumsq, vmin, vmax) "
                            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                            [(teid, terms[a], *rest) for a, *rest in src.execute(
                                "SELECT attr_id, ds, hour, cnt, ncnt, sum, sumsq, vmin, vmax FROM tbuckets "
                                "WHERE teid=?", (teid_old,))])
                bar.advance(task, len(inst))
                counts["temporal_entities"] += 1
                counts["instances"] += len(inst)
            dst.execute("SELECT setval(pg_get_serial_sequence('tinstances', 'iid'), "
                        "greatest((SELECT max(iid) FROM tinstances), 1))")

        # ---- subscriptions (+ delivery counters) and hosted contexts
        task = bar.add_task("subscriptions", total=_count(src, "subscriptions"))
        with dst.transaction():
            for tid, sid, doc in src.execute("SELECT tid, id, doc FROM subscriptions ORDER BY rowid"):
                dst.execute("INSERT INTO subscriptions(tid, id, doc) VALUES (%s, %s, %s) ON CONFLICT (tid, id) "
                            "DO UPDATE SET doc=excluded.doc", (tenant_map[tid], sid, bytes(doc)))
                counts["subscriptions"] += 1
                bar.advance(task)
            if _has(src, "substatus"):
                for tid, sid, doc in src.execute("SELECT tid, id, doc FROM substatus"):
                    dst.execute("INSERT INTO substatus(tid, id, doc) VALUES (%s, %s, %s) ON CONFLICT (tid, id) "
                                "DO UPDATE SET doc=excluded.doc", (tenant_map[tid], sid, bytes(doc)))
        task = bar.add_task("contexts", total=_count(src, "contexts"))
        with dst.transaction():
            for cid, url, doc, created in src.execute("SELECT cid, url, doc, created_at FROM contexts"):
                dst.execute("INSERT INTO contexts(cid, url, doc, created_at) VALUES (%s, %s, %s, %s) "
                            "ON CONFLICT (cid) DO UPDATE SET url=excluded.url, doc=excluded.doc, "
                            "created_at=excluded.created_at", (cid, url, bytes(doc), created))
                counts["contexts"] += 1
                bar.advance(task)
    src.close()
    dst.close()
    return counts


# ---- the ``urbanmim db`` command ------------------------------------------------------------------
def add_db_parser(sub: Any) -> None:
    p_db = sub.add_parser("db", help="PostgreSQL schema versions and migration from SQLite")
    dsub = p_db.add_subparsers(dest="db_cmd", required=True)
    p_up = dsub.add_parser("upgrade", help="create the database/schema if missing and apply pending migrations")
    p_up.add_argument("--db", required=True, help="postgresql://user@host:port/dbname[?schema=name]")
    p_st = dsub.add_parser("status", help="print the applied and the newest schema version")
    p_st.add_argument("--db", required=True, help="postgresql://user@host:port/dbname[?schema=name]")
    p_mf = dsub.add_parser("migrate-from", help="copy a SQLite store into PostgreSQL (idempotent)")
    p_mf.add_argument("source", help="sqlite:///path/to/file.db (or a plain path)")
    p_mf.add_argument("--db", required=True, help="target postgresql://... URL")
    p_mf.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_db_command(args: argparse.Namespace) -> int:
    from urbanmim.store.migrations import current_version, migrations, upgrade
    target: str = args.db
    if not target.startswith(("postgresql://", "postgres://")):
        print("urbanmim: --db must be a postgresql:// URL", file=sys.stderr)
        return 2
    if args.db_cmd == "upgrade":
        applied = upgrade(target)
        print(f"urbanmim: applied {', '.join(applied)}" if applied else "urbanmim: schema is up to date",
              file=sys.stderr)
    elif args.db_cmd == "status":
        print(f"applied {current_version(target)}, newest {migrations()[-1][0]}")
    elif args.db_cmd == "migrate-from":
        counts = migrate_from(args.source, target, progress=not args.no_progress)
        print("urbanmim: copied " + ", ".join(f"{n} {k}" for k, n in counts.items()), file=sys.stderr)
    return 0
