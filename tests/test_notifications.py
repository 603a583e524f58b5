"""Notifications: delivered at least once, in order per subscription, with the subscription's options.

A real HTTP receiver on 127.0.0.1 (a thread in the test process) that can answer 500 or be
down; the broker runs in-process (its notifier is a task of the test's event loop), except
for the crash test, which SIGKILLs a real ``urbanmim serve``.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, free_port
from tests.helpers import prop, vehicle

JSONLD = "application/ld+json"


class Receiver:
    """An HTTP notification receiver: records every POST; ``fail`` makes it answer 500."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.got: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.fail = False
        self.attempts = 0
        self.server: http.server.ThreadingHTTPServer | None = None
        self.cond = threading.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/notify"

    def start(self) -> Receiver:
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with rec.cond:
                    rec.attempts += 1
                    if rec.fail:
                        self.send_response(500)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    rec.got.append(json.loads(body))
                    rec.headers.append(dict(self.headers))
                    rec.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    async def wait(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.got) >= n:
                return list(self.got)
            await asyncio.sleep(0.02)
        raise AssertionError(f"expected {n} notifications, got {len(self.got)}")

    async def wait_entities(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """A backlog may arrive batched (several entities per notification): count entities."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.entities()) >= n:
                return self.entities()
            await asyncio.sleep(0.02)
        raise AssertionError(f"expected {n} notified entities, got {len(self.entities())}")

    def entities(self) -> list[dict[str, Any]]:
        return [e for n in self.got for e in n["data"]]


@pytest.fixture
def receiver() -> Any:
    r = Receiver().start()
    yield r
    r.stop()


def sub_payload(uri: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "Subscription", "entities": [{"type": "Vehicle"}],
                            "notification": {"endpoint": {"uri": uri}}}
    notification = extra.pop("notification", {})
    body["notification"].update(notification)
    body.update(extra)
    return body


async def subscribe(client: httpx.AsyncClient, uri: str, **extra: Any) -> str:
    r = await client.post("/subscriptions", json=sub_payload(uri, **extra))
    assert r.status_code == 201, r.text
    return r.headers["Location"].rsplit("/", 1)[1]


async def set_speed(client: httpx.AsyncClient, n: int, speed: Any) -> None:
    r = await client.patch(f"/entities/urn:ngsi-ld:Vehicle:{n}/attrs", json={"speed": prop(speed)})
    assert r.status_code == 204, r.text


async def test_notification_body_and_headers(client: httpx.AsyncClient, receiver: Receiver) -> None:
    sid = await subscribe(client, receiver.url, notification={"endpoint": {"uri": receiver.url, "receiverInfo": [
            {"key": "X-City", "value": "Madrid"}]}})
    r = await client.post("/entities", json=vehicle(1, speed=prop(10)))
    assert r.status_code == 201
    [n] = await receiver.wait(1)
    assert n["type"] == "Notification" and n["subscriptionId"] == sid
    assert n["id"].startswith("urn:ngsi-ld:Notification:") and n["notifiedAt"].endswith("Z")
    assert n["data"] == [{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "speed": {"type": "Property",
                                                                                       "value": 10}}]
    h = {k.lower(): v for k, v in receiver.headers[0].items()}
    assert h["content-type"] == "application/json"
    assert "ngsi-ld-core-context" in h["link"]
    assert h["x-city"] == "Madrid"
    # the receiver has the body before the notifier has read its 200 and counted the delivery
    for _ in range(100):
        got = (await client.get(f"/subscriptions/{sid}")).json()
        if got["notification"].get("timesSent"):
            break
        await asyncio.sleep(0.05)
    assert got["notification"]["timesSent"] == 1 and got["notification"]["lastSuccess"]


async def test_formats_and_ldjson(client: httpx.AsyncClient, receiver: Receiver) -> None:
    await subscribe(client, receiver.url, notification={"format": "keyValues", "attributes": ["speed"],
                                                        "endpoint": {"uri": receiver.url, "accept": JSONLD}})
    await client.post("/entities", json=vehicle(1, speed=prop(10), brand=prop("x")))
    [n] = await receiver.wait(1)
    assert n["data"] == [{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "speed": 10,
                          "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"}]
    assert "Link" not in receiver.headers[0]
    assert receiver.headers[0].get("Content-Type") == JSONLD


async def test_receiver_failing_then_back_gets_everything_in_order(client: httpx.AsyncClient,
                                                                   receiver: Receiver) -> None:
    await client.post("/entities", json=vehicle(1, speed=prop(0)))
    sid = await subscribe(client, receiver.url, watchedAttributes=["speed"])
    receiver.fail = True
    for i in range(1, 21):
        await set_speed(client, 1, i)
    await asyncio.sleep(1.0)
    assert receiver.attempts >= 2 and not receiver.got
    failed = (await client.get(f"/subscriptions/{sid}")).json()["notification"]
    assert failed["timesFailed"] >= 1 and failed["lastFailure"]
    receiver.fail = False
    await receiver.wait_entities(20, timeout=15)
    speeds = [e["speed"]["value"] for e in receiver.entities()]
    assert speeds == list(range(1, 21))
    assert len({n["id"] for n in receiver.got}) == len(receiver.got)


async def test_receiver_down_does_not_block_other_subscriptions(client: httpx.AsyncClient,
                                                                receiver: Receiver) -> None:
    dead = f"http://127.0.0.1:{free_port()}/notify"
    await subscribe(client, dead)
    await subscribe(client, receiver.url)
    await client.post("/entities", json=vehicle(1, speed=prop(0)))
    for i in range(1, 6):
        await set_speed(client, 1, i)
    await receiver.wait_entities(6)
    assert [e["speed"]["value"] for e in receiver.entities()] == [0, 1, 2, 3, 4, 5]


async def test_throttling(client: httpx.AsyncClient, receiver: Receiver) -> None:
    await client.post("/entities", json=vehicle(1, speed=prop(0)))
    await subscribe(client, receiver.url, throttling=2)
    for i in range(1, 6):
        await set_speed(client, 1, i)
    await receiver.wait(1)
    await asyncio.sleep(0.5)
    assert len(receiver.got) == 1
    await asyncio.sleep(1.8)
    await set_speed(client, 1, 99)
    await receiver.wait(2)
    assert receiver.entities()[-1]["speed"]["value"] == 99


async def test_time_interval(client: httpx.AsyncClient, receiver: Receiver) -> None:
    await client.post("/entities", json=vehicle(1, speed=prop(0)))
    await client.post("/entities", json=vehicle(2, speed=prop(5)))
    await subscribe(client, receiver.url, timeInterval=1)
    got = await receiver.wait(2, timeout=5)
    assert sorted(e["id"] for e in got[0]["data"]) == ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:2"]
    await set_speed(client, 1, 3)     # a periodic subscription does not notify on changes
    n = len(receiver.got)
    await asyncio.sleep(0.3)
    assert len(receiver.got) <= n + 1


async def test_expires_at(client: httpx.AsyncClient, receiver: Receiver) -> None:
    from datetime import UTC, datetime, timedelta
    soon = (datetime.now(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sid = await subscribe(client, receiver.url, expiresAt=soon)
    await client.post("/entities", json=vehicle(1, speed=prop(0)))
    await receiver.wait(1)
    await asyncio.sleep(1.2)
    await set_speed(client, 1, 1)
    await asyncio.sleep(0.5)
    assert len(receiver.got) == 1
    assert (await client.get(f"/subscriptions/{sid}")).json()["status"] == "expired"


async def test_paused_and_resumed(client: httpx.AsyncClient, receiver: Receiver) -> None:
    await client.post("/entities", json=vehicle(1, speed=prop(0)))
    sid = await subscribe(client, receiver.url, isActive=False)
    await set_speed(client, 1, 1)
    await asyncio.sleep(0.4)
    assert not receiver.got
    r = await client.patch(f"/subscriptions/{sid}", json={"isActive": True})
    assert r.status_code == 204
    await set_speed(client, 1, 2)
    [n] = await receiver.wait(1)
    assert n["data"][0]["speed"]["value"] == 2


async def test_show_changes_and_deletions(client: httpx.AsyncClient, receiver: Receiver) -> None:
    await client.post("/entities", json=vehicle(1, speed=prop(1), brand=prop("b")))
    await subscribe(client, receiver.url, notificationTrigger=["attributeUpdated", "attributeDeleted",
                                                               "entityDeleted"],
                    notification={"showChanges": True})
    await set_speed(client, 1, 2)
    [n] = await receiver.wait(1)
    assert n["data"][0]["speed"] == {"type": "Property", "value": 2, "previousValue": 1}
    assert n["triggerReason"] == "attributeUpdated"
    assert (await client.delete("/entities/urn:ngsi-ld:Vehicle:1/attrs/brand")).status_code == 204
    got = await receiver.wait(2)
    assert got[1]["data"][0]["brand"] == {"type": "Property", "value": "urn:ngsi-ld:null", "previousValue": "b"}
    assert (await client.delete("/entities/urn:ngsi-ld:Vehicle:1")).status_code == 204
    got = await receiver.wait(3)
    assert got[2]["data"][0]["deletedAt"] and got[2]["triggerReason"] == "entityDeleted"


async def test_q_and_watched_attributes(client: httpx.AsyncClient, receiver: Receiver) -> None:
    await client.post("/entities", json=vehicle(1, speed=prop(0), brand=prop("b")))
    await subscribe(client, receiver.url, watchedAttributes=["speed"], q="speed>50")
    await set_speed(client, 1, 10)
    await client.patch("/entities/urn:ngsi-ld:Vehicle:1/attrs", json={"brand": prop("c")})
    await set_speed(client, 1, 60)
    await receiver.wait(1)
    await asyncio.sleep(0.3)
    assert [e["speed"]["value"] for e in receiver.entities()] == [60]


async def test_deleted_subscription_drops_its_queue(client: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.fail = True
    sid = await subscribe(client, receiver.url)
    await client.post("/entities", json=vehicle(1, speed=prop(0)))
    await asyncio.sleep(0.3)
    assert (await client.delete(f"/subscriptions/{sid}")).status_code == 204
    receiver.fail = False
    await asyncio.sleep(1.0)
    assert not receiver.got


@pytest.mark.slow
def test_nothing_lost_across_sigkill(tmp_path: Path) -> None:
    """Acknowledged writes whose notifications were not yet delivered are delivered after a restart."""
    port = free_port()
    srv = Server(tmp_path / "kill.db").start()
    try:
        uri = f"http://127.0.0.1:{port}/notify"
        r = httpx.post(f"{srv.url}/subscriptions", json=sub_payload(uri, watchedAttributes=["speed"]))
        assert r.status_code == 201, r.text
        assert httpx.post(f"{srv.url}/entities", json=vehicle(1, speed=prop(0))).status_code == 201
        for i in range(1, 31):
            r = httpx.patch(f"{srv.url}/entities/urn:ngsi-ld:Vehicle:1/attrs", json={"speed": prop(i)})
            assert r.status_code == 204
        srv.kill()                      # the receiver was down the whole time: nothing was delivered
        rec = Receiver(port).start()
        try:
            srv.start()
            deadline = time.time() + 20
            while len(rec.entities()) < 31 and time.time() < deadline:
                time.sleep(0.05)
            speeds = [e["speed"]["value"] for e in rec.entities()]
            assert speeds == list(range(0, 31)), speeds
        finally:
            rec.stop()
    finally:
        srv.kill()
