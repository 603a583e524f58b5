"""Notification latency: from an entity update to the receiver holding the notification.

    .venv/bin/python -m bench.notify_latency [--rate 1000] [--seconds 10] [--entities 100] [--synchronous FULL]

Starts a real ``urbanmim serve`` (temporary SQLite file), a minimal keep-alive HTTP
receiver in this process, one subscription on the updated type, then PATCHes entities at
``--rate`` updates/s (open loop: each update has its scheduled time; a late server makes
it queue, it does not slow the load down). Each update carries its send time as the value;
the receiver subtracts it from the arrival time. Prints p50/p90/p99/max and how many
notifications arrived (goal at 1,000 updates/s: p99 < 20 ms, none missing), and — for
reference — the latency of the updates themselves (PATCH sent → 204): the notification
cannot arrive before its write is committed, so that is the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent


class Receiver:
    def __init__(self) -> None:
        self.lat: list[float] = []
        self.ids: set[str] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                n = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        n = int(line[15:])
                body = await reader.readexactly(n)
                now = time.time()
                note = orjson.loads(body)
                self.ids.add(note["id"])
                for e in note["data"]:
                    self.lat.append((now - e["sent"]["value"]) * 1000)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--entities", type=int, default=100)
    ap.add_argument("--port", type=int, default=0, help="broker port (default: a free one)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--synchronous", default="FULL", help="the broker's sqlite_synchronous (FULL | NORMAL)")
    args = ap.parse_args()
    if not args.port:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            args.port = sock.getsockname()[1]
    rec = Receiver()
    srv = await asyncio.start_server(rec.handle, "127.0.0.1", 0)
    rport = srv.sockets[0].getsockname()[1]
    tmp = tempfile.mkdtemp()
    env = dict(os.environ, URBANMIM_LOG_LEVEL="warning", URBANMIM_SQLITE_SYNCHRONOUS=args.synchronous)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "urbanmim.cli",
        "serve",
        "--port",
        str(args.port),
        "--db",
        os.path.join(tmp, "b.db"),
        env=env,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{args.port}/ngsi-ld/v1"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=64)) as c:
            for _ in range(100):
                try:
                    await c.get("/types")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            for i in range(args.entities):
                await c.post(
                    "/entities",
                    json={"id": f"urn:ngsi-ld:Car:{i}", "type": "Car", "sent": {"type": "Property", "value": 0}},
                )
            await c.post(
                "/subscriptions",
                json={
                    "type": "Subscription",
                    "entities": [{"type": "Car"}],
                    "watchedAttributes": ["sent"],
                    "notification": {"endpoint": {"uri": f"http://127.0.0.1:{rport}/n"}},
                },
            )
            await asyncio.sleep(0.5)
            rec.lat.clear()
            total = int(args.rate * args.seconds)
            t0 = time.time() + 0.2
            conns = [await asyncio.open_connection("127.0.0.1", args.port) for _ in range(args.connections)]
            queues: list[asyncio.Queue[int | None]] = [asyncio.Queue() for _ in conns]

            async def sender(k: int) -> None:
                # raw keep-alive HTTP/1.1: an httpx client would cost more CPU than the broker
                reader, writer = conns[k]
                while (i := await queues[k].get()) is not None:
                    sent = time.time()
                    body = orjson.dumps({"sent": {"type": "Property", "value": sent}})
                    writer.write(
                        f"PATCH /ngsi-ld/v1/entities/urn:ngsi-ld:Car:{i % args.entities}/attrs HTTP/1.1"
                        f"\r\nHost: x\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
                    head = await reader.readuntil(b"\r\n\r\n")
                    if not head.startswith(b"HTTP/1.1 204"):
                        raise SystemExit(f"update failed: {head[:80]!r}")
                    acked.append((time.time() - sent) * 1000)
                writer.close()

            acked: list[float] = []
            senders = [asyncio.create_task(sender(k)) for k in range(len(conns))]
            for i in range(total):
                delay = t0 + i / args.rate - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                queues[i % len(queues)].put_nowait(i)
            for qu in queues:
                qu.put_nowait(None)
            await asyncio.gather(*senders)
            took = time.time() - t0
            deadline = time.time() + 30
            while len(rec.lat) < total and time.time() < deadline:
                await asyncio.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()
        srv.close()
    lat = sorted(rec.lat)
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float("nan")] * 99
    print(f"updates: {total} in {took:.1f}s ({total / took:.0f}/s); notifications received: {len(lat)}")
    print(f"notification latency ms (update sent -> notification received): p50 {q[49]:.1f}  p90 {q[89]:.1f}  "
          f"p99 {q[98]:.1f}  max {lat[-1]:.1f}")
    a = statistics.quantiles(sorted(acked), n=100)
    print(f"update latency ms (for reference: sent -> 204 received): p50 {a[49]:.1f}  p99 {a[98]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
