"""Shared fixtures: an in-process app per test (fresh SQLite file, and again on a fresh PostgreSQL schema),
and a live server when needed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from urbanmim.app import create_app
from urbanmim.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


# PostgreSQL for the backend-parametrised fixtures (scripts/install-postgres creates it)
PG_URL = os.environ.get("URBANMIM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/urbanmim_test")


def fresh_pg_schema() -> Iterator[str]:
    """A fresh, empty schema in the test database: ``postgresql://...?schema=t_<random>``, dropped after
    (skips when PostgreSQL is not there; ``scripts/test`` makes that fatal in CI)."""
    import uuid

    import psycopg
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL not available at {PG_URL}: {e}")
    yield f"{PG_URL}?schema={schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def pg_db() -> Iterator[str]:
    yield from fresh_pg_schema()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The storage target of the ``app`` fixture: every API test runs over both backends."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_db"))
    return str(tmp_path / "test.db")


@pytest.fixture
async def app(db_target: str) -> AsyncIterator[object]:
    application = create_app(Settings(db=db_target, sqlite_synchronous="NORMAL"))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver/ngsi-ld/v1") as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A real ``urbanmim serve`` process (for crash tests and third-party clients)."""

    def __init__(self, db: Path, port: int | None = None, extra_env: dict[str, str] | None = None):
        self.db, self.port = db, port or free_port()
        self.env = dict(os.environ, **(extra_env or {}))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ngsi-ld/v1"

    def start(self) -> Server:
        self.proc = subprocess.Popen([sys.executable, "-m", "urbanmim.cli", "serve", "--port", str(self.port),
                                      "--db", str(self.db)], env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=0.5)
                return self
            except httpx.HTTPError:
                if self.proc.poll() is not None:
                    raise RuntimeError("server exited: " + (self.proc.stderr.read() or b"").decode()[-2000:]) from None
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "live.db").start()
    yield s
    s.kill()
