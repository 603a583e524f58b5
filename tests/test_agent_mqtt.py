"""Device agent over MQTT, with the real Mosquitto on 127.0.0.1:1883 (scripts/install-mosquitto starts it).

Every test uses its own topic prefix and client id, and removes its persistent session
from the broker at the end, so tests never see each other's messages.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, free_port
from urbanmim.app import create_app
from urbanmim.settings import Settings


def _broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=0.5):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _broker_up(), reason="no MQTT broker on 127.0.0.1:1883 (scripts/install-mosquitto)")

KEY = "mqtt-key-0001"
T = {"NGSILD-Tenant": "city/north"}        # a tenant with a '/' in its name, on purpose


def device(dev_id: str) -> dict[str, Any]:
    return {"deviceId": dev_id, "apiKey": KEY, "entityType": "AirQualityObserved",
            "attributes": [{"key": "no2", "name": "NO2", "unitCode": "GQ"},
                           {"key": "seq", "name": "seq"}]}


async def publish(topic: str, payloads: list[bytes], *, qos: int = 1) -> None:
    import aiomqtt
    c = aiomqtt.Client("127.0.0.1", 1883, identifier=f"pub-{uuid.uuid4().hex[:8]}", max_concurrent_outgoing_calls=200)
    async with c:
        await asyncio.gather(*(c.publish(topic, p, qos=qos) for p in payloads))


async def forget_session(client_id: str) -> None:
    """Drop a persistent session from the broker (Clean Start, no expiry)."""
    import aiomqtt
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5,
                              clean_start=True):
        pass


async def wait_for(pred: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last: {got!r}")
        await asyncio.sleep(0.05)


@pytest.fixture
def names() -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:10]
    cid = f"urbanmim-test-{tag}"
    yield f"urbanmim-test/{tag}", cid
    asyncio.run(forget_session(cid))


@pytest.fixture
async def mq_app(tmp_path: Path, names: tuple[str, str]) -> AsyncIterator[Any]:
    prefix, cid = names
    app = create_app(Settings(db=str(tmp_path / "t.db"), sqlite_synchronous="NORMAL", mqtt_url="mqtt://127.0.0.1:1883",
                              mqtt_prefix=prefix, mqtt_client_id=cid, mqtt_session_expiry=300))
    async with app.router.lifespan_context(app):
        yield app


async def test_mqtt_measurements_reach_entity_and_history(mq_app: Any, names: tuple[str, str]) -> None:
    prefix = names[0]
    transport = httpx.ASGITransport(app=mq_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.post("/iot/v1/devices", json=device("aq-1"), headers=T)).status_code == 201
        assert (await c.post("/iot/v1/devices", json=device("aq-9"))).status_code == 201     # default tenant

        async def subscribed() -> bool:
            return bool((await c.get("/iot/v1/stats")).json()["mqtt"].get("subscribed"))
        await wait_for(subscribed)
        topic = f"{prefix}/city/north/{KEY}/aq-1/attrs"
        await publish(topic, [b'{"no2": 41.5, "ts": "2024-05-01T10:00:00Z"}'])
        await publish(topic, [b'[{"no2": 42, "ts": "2024-05-01T10:01:00Z"}, '
                              b'{"no2": 43, "ts": "2024-05-01T10:02:00Z"}]'])
        await publish(f"{prefix}/{KEY}/aq-9/attrs", [b'{"no2": 7}'], qos=0)
        # rejected, each counted under its reason
        await publish(f"{prefix}/city/north/{KEY}/nobody/attrs", [b'{"no2": 1}'])
        await publish(f"{prefix}/city/north/wrong-key-000/aq-1/attrs", [b'{"no2": 1}'])
        await publish(topic, [b'{"no2": ', b'{"no2": 1, "ts": "soon"}', b'"text"'])
        await publish(f"{prefix}/just/wrong", [b'{"no2": 1}'])
        await publish(f"{prefix}/{KEY}/aq-1/attrs", [b'{"no2": 1}'])     # aq-1 is not in the default tenant

        async def settled() -> dict[str, Any] | None:
            s = (await c.get("/iot/v1/stats")).json()
            return s if s["measurements"] == 4 and s["rejectedTotal"] == 7 else None
        stats = await wait_for(settled)
        assert stats["rejected"] == {"unknown_device": 2, "bad_api_key": 1, "malformed_payload": 3, "bad_topic": 1,
                                     "write_failed": 0, "internal_error": 0}
        assert stats["messages"]["mqtt"] == 10 and stats["mqtt"]["connected"] is True

        api = "/ngsi-ld/v1"
        ent = (await c.get(f"{api}/entities/urn:ngsi-ld:AirQualityObserved:aq-1", headers=T)).json()
        assert ent["NO2"] == {"type": "Property", "value": 43, "unitCode": "GQ",
                              "observedAt": "2024-05-01T10:02:00.000Z"}
        r = await c.get(f"{api}/temporal/entities/urn:ngsi-ld:AirQualityObserved:aq-1", headers=T,
                        params={"timerel": "after", "timeAt": "2024-01-01T00:00:00Z", "attrs": "NO2"})
        assert r.status_code == 200, r.text
        assert [(i["observedAt"], i["value"]) for i in r.json()["NO2"]] == [
            ("2024-05-01T10:00:00.000Z", 41.5), ("2024-05-01T10:01:00.000Z", 42), ("2024-05-01T10:02:00.000Z", 43)]
        other = (await c.get(f"{api}/entities/urn:ngsi-ld:AirQualityObserved:aq-9")).json()
        assert other["NO2"]["value"] == 7


async def test_platform_starts_without_broker(tmp_path: Path) -> None:
    app = create_app(Settings(db=str(tmp_path / "t.db"), mqtt_url=f"mqtt://127.0.0.1:{free_port()}"))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            async def failed() -> dict[str, Any] | None:
                m = (await c.get("/iot/v1/stats")).json()["mqtt"]
                return m if m["lastError"] else None
            m = await wait_for(failed, 10)
            assert m["enabled"] and not m["connected"]
            assert (await c.get("/ngsi-ld/v1/types")).status_code == 200
            assert (await c.post("/iot/v1/devices", json=device("d1"))).status_code == 201
            r = await c.post("/iot/v1/measurements", params={"k": KEY, "i": "d1"}, json={"no2": 3})
            assert r.status_code == 204


async def _distinct_seq(url: str, entity_id: str) -> tuple[int, int]:
    """(distinct, total) ``seq`` instances in the temporal history, through the NGSI-LD API."""
    async with httpx.AsyncClient() as h:
        r = await h.get(f"{url}/temporal/entities/{entity_id}", headers=T, params={
            "timerel": "between", "timeAt": "2024-01-01T00:00:00Z", "endTimeAt": "2025-01-01T00:00:00Z",
            "attrs": "seq", "options": "aggregatedValues", "aggrMethods": "distinctCount,totalCount",
            "aggrPeriodDuration": "P1Y"})
        if r.status_code == 404:
            return 0, 0
        r.raise_for_status()
        a = r.json().get("seq")
        if not a:
            return 0, 0
        return int(sum(x[0] for x in a["distinctCount"])), int(sum(x[0] for x in a["totalCount"]))


def _msg(seq: int) -> bytes:
    return (b'{"seq": %d, "no2": %d, "ts": "2024-06-01T00:00:00Z"}' % (seq, seq)).replace(
        b"00:00:00Z", b"%02d:%02d:%02dZ" % (seq // 3600, seq // 60 % 60, seq % 60))


@pytest.mark.slow
async def test_restart_loses_no_acknowledged_measurement(tmp_path: Path, names: tuple[str, str]) -> None:
    """QoS-1 messages published before, during and after a graceful stop and a kill -9 all arrive."""
    prefix, cid = names
    env = {"URBANMIM_MQTT_URL": "mqtt://127.0.0.1:1883", "URBANMIM_MQTT_PREFIX": prefix,
           "URBANMIM_MQTT_CLIENT_ID": cid, "URBANMIM_MQTT_SESSION_EXPIRY": "300", "URBANMIM_LOG_LEVEL": "warning"}
    srv = Server(tmp_path / "live.db", extra_env=env).start()
    eid = "urn:ngsi-ld:AirQualityObserved:aq-r"
    topic = f"{prefix}/city/north/{KEY}/aq-r/attrs"
    try:
        async with httpx.AsyncClient() as h:
            base = srv.url.replace("/ngsi-ld/v1", "/iot/v1")
            assert (await h.post(f"{base}/devices", json=device("aq-r"), headers=T)).status_code == 201

            async def subscribed() -> bool:
                return bool((await h.get(f"{base}/stats")).json()["mqtt"].get("subscribed"))
            await wait_for(subscribed)
        seq = 0
        for how in ("stop", "kill"):
            # publish continuously while the server goes down, then more while it is down
            pub = asyncio.create_task(publish(topic, [_msg(i) for i in range(seq, seq + 300)]))
            await asyncio.sleep(0.05)
            await asyncio.to_thread(srv.stop if how == "stop" else srv.kill)
            await pub
            await publish(topic, [_msg(i) for i in range(seq + 300, seq + 500)])
            seq += 500
            srv.start()

            deadline = time.monotonic() + 30
            while (got := await _distinct_seq(srv.url, eid))[0] < seq and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            distinct, total = got     # total > distinct: redelivered after kill -9 (at least once)
            assert distinct == seq, f"after {how}: {distinct} of {seq} measurements arrived ({total} instances)"
    finally:
        srv.kill()
