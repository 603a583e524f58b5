"""Bare ASGI app: the ceiling that uvicorn itself imposes on this machine.

No framework, no routing, no JSON parsing: GET (any path) returns a fixed JSON
entity of the same size as a broker entity; POST (any path) reads the whole body
and echoes it back. Served by uvicorn with exactly the broker's options and hit
by exactly the same wrk scripts, it answers "how much of the time is HTTP +
uvicorn, and how much is ours?" -- every broker figure is reported as a
percentage of the matching ceiling.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bench.dataset import batch_body

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# One representative entity (~670 bytes), like a broker's GET /entities/{id} body.
ENTITY = batch_body(0, 1)[1:-1]
JSON_HEADERS = [(b"content-type", b"application/json")]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """GET -> fixed entity JSON; POST/PUT/PATCH -> echo the request body."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] in ("GET", "HEAD"):
        body = ENTITY
    else:
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
