"""MQTT notifications, received by a real MQTT client from the local Mosquitto (127.0.0.1:1883)."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid

import httpx
import pytest

from tests.helpers import prop, vehicle


def _broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=0.5):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _broker_up(), reason="no MQTT broker on 127.0.0.1:1883 (start mosquitto)")


@pytest.mark.parametrize("qos", ["0", "1"])
async def test_mqtt_notification(client: httpx.AsyncClient, qos: str) -> None:
    import aiomqtt
    topic = f"urbanmim-test/{uuid.uuid4().hex}"
    async with aiomqtt.Client("127.0.0.1", 1883) as mq:
        await mq.subscribe(topic, qos=1)
        r = await client.post("/subscriptions", json={
            "type": "Subscription", "entities": [{"type": "Vehicle"}],
            "notification": {"endpoint": {"uri": f"mqtt://127.0.0.1:1883/{topic}",
                                          "notifierInfo": [{"key": "MQTT-QoS", "value": qos}],
                                          "receiverInfo": [{"key": "X-City", "value": "Madrid"}]}}})
        assert r.status_code == 201, r.text
        await client.post("/entities", json=vehicle(1, speed=prop(1)))
        for i in range(2, 6):
            await client.patch("/entities/urn:ngsi-ld:Vehicle:1/attrs", json={"speed": prop(i)})
        got = []
        async with asyncio.timeout(10):
            async for msg in mq.messages:
                got.append(json.loads(msg.payload))  # type: ignore[arg-type]
                if len(got) == 5:
                    break
    meta, body = got[0]["metadata"], got[0]["body"]
    assert meta["Content-Type"] == "application/json" and meta["X-City"] == "Madrid"
    assert body["type"] == "Notification" and body["data"][0]["id"] == "urn:ngsi-ld:Vehicle:1"
    assert [m["body"]["data"][0]["speed"]["value"] for m in got] == [1, 2, 3, 4, 5]
