"""Where notifications go: HTTP(S) POST and MQTT publish.

A sender either returns (the receiver took the notification: a 2xx answer, or an MQTT
publish that the broker acknowledged — PUBACK for QoS 1, the write to the socket for QoS 0)
or raises :class:`DeliveryError`; the notifier retries on errors, so nothing here retries.
Connections are kept: one pooled HTTP client, one MQTT connection per broker and
credentials (reconnected after a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import orjson

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """The receiver did not take the notification (the notifier retries later)."""


class _PlainConnection:
    """A kept-alive HTTP/1.1 connection for plain ``http://`` receivers.

    Why not httpx here: a notification is one small POST, and httpx spends ~1 ms of CPU
    per request — at 1,000 notifications/s that is the whole event loop. This writes the
    request and reads the status line + body by Content-Length (or chunks) in ~50 µs.
    """

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()

    async def post(self, target: str, headers: dict[str, str], body: bytes) -> int:
        async with self.lock:
            for attempt in (0, 1):   # a kept-alive connection the receiver closed: one fresh try
                fresh = self.writer is None
                try:
                    return await asyncio.wait_for(self._post(target, headers, body), self.timeout)
                except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, OSError, ValueError) as e:
                    self.close()
                    if fresh or attempt or isinstance(e, TimeoutError):
                        raise DeliveryError(f"{type(e).__name__}: {e}") from None
            raise DeliveryError("unreachable")

    async def _post(self, target: str, headers: dict[str, str], body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        lines = [f"POST {target} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *hlines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in hlines if h)}
        if "chunked" in hdrs.get("transfer-encoding", "").lower():
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif "content-length" in hdrs:
            await self.reader.readexactly(int(hdrs["content-length"]))
        elif status not in (204, 304):
            await self.reader.read()          # body until close
            self.close()
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class HttpChannel:
    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.client = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=200,
                                                                             max_keepalive_connections=100))
        self.plain: dict[tuple[str, int], _PlainConnection] = {}

    async def send(self, uri: str, headers: dict[str, str], body: bytes) -> None:
        u = urlsplit(uri)
        if u.scheme == "http" and u.hostname:
            key = (u.hostname, u.port or 80)
            conn = self.plain.get(key)
            if conn is None:
                conn = self.plain[key] = _PlainConnection(key[0], key[1], self.timeout)
            target = (u.path or "/") + (f"?{u.query}" if u.query else "")
            status = await conn.post(target, headers, body)
            if not 200 <= status < 300:
                raise DeliveryError(f"receiver answered {status}")
            return
        try:
            resp = await self.client.post(uri, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise DeliveryError(f"{type(e).__name__}: {e}") from None
        if not 200 <= resp.status_code < 300:
            raise DeliveryError(f"receiver answered {resp.status_code}")

    async def close(self) -> None:
        for conn in self.plain.values():
            conn.close()
        await self.client.aclose()


class MqttChannel:
    """One aiomqtt client per (scheme, host, port, user, password, version)."""

    def __init__(self) -> None:
        self.clients: dict[tuple[Any, ...], Any] = {}
        self.stacks: dict[tuple[Any, ...], contextlib.AsyncExitStack] = {}
        self.locks: dict[tuple[Any, ...], asyncio.Lock] = {}

    async def _client(self, key: tuple[Any, ...]) -> Any:
        import aiomqtt
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            client = self.clients.get(key)
            if client is not None:
                return client
            scheme, host, port, user, password, version = key
            protocol = aiomqtt.ProtocolVersion.V5 if version == "mqtt5.0" else aiomqtt.ProtocolVersion.V311
            tls = ssl.create_default_context() if scheme == "mqtts" else None
            client = aiomqtt.Client(host, port, username=user, password=password, protocol=protocol,
                                    tls_context=tls, timeout=10)
            stack = contextlib.AsyncExitStack()
            try:
                await stack.enter_async_context(client)
            except Exception as e:
                raise DeliveryError(f"cannot connect to MQTT broker {host}:{port}: {e}") from None
            self.clients[key], self.stacks[key] = client, stack
            return client

    async def _drop(self, key: tuple[Any, ...]) -> None:
        self.clients.pop(key, None)
        stack = self.stacks.pop(key, None)
        if stack is not None:
            with contextlib.suppress(Exception):
                await stack.aclose()

    async def send(self, uri: str, notifier_info: dict[str, str], message: dict[str, Any]) -> None:
        u = urlsplit(uri)
        port = u.port or (8883 if u.scheme == "mqtts" else 1883)
        key = (u.scheme, u.hostname or "localhost", port, unquote(u.username) if u.username else None,
               unquote(u.password) if u.password else None, notifier_info.get("MQTT-Version", "mqtt3.1.1"))
        qos = int(notifier_info.get("MQTT-QoS", "0") or 0)
        topic = u.path.lstrip("/")
        client = await self._client(key)
        try:
            await asyncio.wait_for(client.publish(topic, orjson.dumps(message), qos=min(max(qos, 0), 2)), 10)
        except Exception as e:
            await self._drop(key)
            raise DeliveryError(f"MQTT publish to {u.hostname}:{port}/{topic} failed: {e}") from None

    async def close(self) -> None:
        for key in list(self.clients):
            await self._drop(key)
