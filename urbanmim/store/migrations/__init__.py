"""Versioned SQL migrations for the PostgreSQL backend, and the tiny runner that applies them.

Why a runner of our own (30 lines) rather than Alembic: the schema is plain SQL owned by
one module, there is no ORM model to diff against, and the runner must be safe when N
``urbanmim serve`` processes start on one database at once. Each file ``NNNN_name.sql``
here is one version; ``schema_migrations`` records what was applied. The runner takes a
transaction-level advisory lock (one per schema), so concurrent starters queue and the
second finds nothing left to do; each migration commits with its version row, so a
failed migration leaves the previous version intact.

A target URL may carry ``?schema=name`` (our own parameter, removed before libpq sees it):
the tables then live in that schema (created if missing) with ``public`` — where PostGIS
is installed — behind it on the search path. Tests use it for a fresh schema per test.
"""

from __future__ import annotations

import re
from importlib import resources
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def parse_url(url: str) -> tuple[str, str]:
    """``postgresql://...?schema=s`` -> (libpq URL without ``schema``, schema name, default public)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), "public")
    if not _SCHEMA.match(schema):
        raise ValueError(f"invalid schema name {schema!r} (lower-case letters, digits, _)")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment)), schema


def migrations() -> list[tuple[int, str, str]]:
    """Every migration shipped with the package: (version, file name, SQL), in order."""
    out = []
    for entry in resources.files(__package__).iterdir():
        m = _NAME.match(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text()))
    return sorted(out)


def ensure_database(conninfo: str) -> bool:
    """Create the target database when it does not exist (connecting to ``postgres``). True if created."""
    try:
        psycopg.connect(conninfo, connect_timeout=10).close()
        return False
    except psycopg.OperationalError as e:
        if "does not exist" not in str(e):
            raise
    parts = urlsplit(conninfo)
    dbname = parts.path.lstrip("/")
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, parts.fragment))
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            # another process won the race (PostgreSQL reports it either way, depending on timing)
            return False
    return True


def upgrade(url: str) -> list[str]:
    """Bring the database (and schema) of ``url`` to the newest version; the names applied."""
    conninfo, schema = parse_url(url)
    ensure_database(conninfo)
    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        with conn.transaction():
            # CREATE EXTENSION is database-wide: serialise it across concurrent starters too
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('urbanmim:postgis'))")
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis SCHEMA public")
        for version, name, text in migrations():
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"urbanmim:migrate:{schema}",))
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                conn.execute(sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(schema)))
                conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations(version int PRIMARY KEY, "
                             "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
                row = conn.execute("SELECT 1 FROM schema_migrations WHERE version=%s", (version,)).fetchone()
                if row is not None:
                    continue
                conn.execute(text.encode())
                conn.execute("INSERT INTO schema_migrations(version, name) VALUES (%s, %s)", (version, name))
                applied.append(name)
    return applied


def current_version(url: str) -> int:
    """The newest applied version (0 for an empty schema)."""
    conninfo, schema = parse_url(url)
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (f"{schema}.schema_migrations",)).fetchone()
        if row is None or row[0] is None:
            return 0
        q = sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_migrations").format(sql.Identifier(schema))
        got = conn.execute(q).fetchone()
        return int(got[0]) if got else 0
