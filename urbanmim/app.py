"""The ASGI application: routes mounted under /ngsi-ld/v1, one error handler, lifespan.

Errors are rendered here and only here (``problem_response``): an ``NgsiError`` keeps
its status and type; anything else is logged with its traceback and answered with a
generic 500 ProblemDetails — a client never sees a traceback.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from urbanmim.components import default_components
from urbanmim.errors import InternalError, InvalidRequest, MethodNotAllowed, NgsiError, ResourceNotFound
from urbanmim.ngsild.contexts import ContextRegistry, StoredContext
from urbanmim.ngsild.http import allowed_params, known_params, problem_response
from urbanmim.ngsild.routes import batch, discovery, entities, info, jsonld_contexts, query_post
from urbanmim.service.entities import EntityService
from urbanmim.settings import Settings
from urbanmim.store.base import Store

log = logging.getLogger("urbanmim")


def open_store(settings: Settings) -> Store:
    target = settings.db
    if target.startswith(("postgresql://", "postgres://")):
        from urbanmim.store.postgres import PostgresStore
        return PostgresStore(target, pool_min=settings.pg_pool_min, pool_max=settings.pg_pool_max,
                             pool_timeout=settings.pg_pool_timeout)
    from urbanmim.store.sqlite import SQLiteStore
    path = target[len("sqlite:///"):] if target.startswith("sqlite:///") else target
    return SQLiteStore(path, synchronous=settings.sqlite_synchronous)


async def _ngsi_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NgsiError)
    return problem_response(exc, request.headers.get("NGSILD-Tenant"))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        err: NgsiError = ResourceNotFound(f"no resource at {request.url.path}")
    elif exc.status_code == 405:
        err = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
    else:
        err = InvalidRequest(str(exc.detail))
        err.status = exc.status_code
    resp = problem_response(err)
    if exc.status_code == 405 and exc.headers:
        resp.headers.update(exc.headers)
    return resp


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem_response(InternalError("an unexpected error occurred; it has been logged"))


class StripTrailingSlash:
    """``/entityOperations/upsert/`` is the same resource as without the slash (some clients add it)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                scope = dict(scope, path=path.rstrip("/") or "/")
        await self.app(scope, receive, send)


def _guard_params(routes: list[Any]) -> list[Any]:
    """Each route whose URI parameters are known rejects undefined ones (wrapped once, here)."""
    out = []
    for r in routes:
        allowed = allowed_params(r.methods or (), r.path) if isinstance(r, Route) else None
        if allowed is not None:
            r = Route(r.path, known_params(r.endpoint, allowed), methods=sorted(r.methods - {"HEAD"}), name=r.name)
        out.append(r)
    return out


def create_app(settings: Settings | None = None, store: Store | None = None) -> Starlette:
    settings = settings or Settings()
    store = store or open_store(settings)
    contexts = ContextRegistry(timeout=settings.context_timeout)
    components = default_components()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for c in components:
            c.install(app)
        await store.open()
        async def load_hosted() -> None:
            stored = await store.load_contexts()
            urls = {url for _, url, _, _ in stored}
            for url, c in list(contexts.documents.items()):
                if c.kind == "Hosted" and url not in urls:      # deleted by another process
                    del contexts.documents[url]
                    contexts.forget(url)
            for cid, url, doc, created in stored:
                contexts.documents[url] = StoredContext(id=cid, url=url, kind="Hosted", document=doc,
                                                        created_at=created)

        await load_hosted()
        remote = getattr(store, "remote_listeners", None)
        if remote is not None:   # several processes on one database: follow hosted @context changes
            remote.append(lambda kind, tenant, key: load_hosted() if kind == "context" else None)
        started = []
        try:
            for c in components:
                await c.start(app)
                started.append(c)
            yield
        finally:
            for c in reversed(started):
                await c.stop(app)
            await store.close()

    api = _guard_params([*entities.routes, *batch.routes, *discovery.routes, *jsonld_contexts.routes, *info.routes,
                        *query_post.routes, *(r for c in components for r in c.routes)])
    app = Starlette(
        routes=[Mount("/ngsi-ld/v1", routes=api), Route("/", info.home)],
        exception_handlers={NgsiError: _ngsi_error, HTTPException: _http_error, Exception: _unexpected},
        lifespan=lifespan,
        middleware=[Middleware(StripTrailingSlash)],
    )
    app.state.settings = settings
    app.state.store = store
    app.state.contexts = contexts
    app.state.entities = EntityService(store)
    return app


def app_factory() -> Any:
    """For ``uvicorn --factory urbanmim.app:app_factory`` (settings from the environment)."""
    return create_app(Settings.load())
