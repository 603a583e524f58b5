"""The MQTT side of the agent: one persistent QoS-1 subscription, acknowledged after commit.

Topic convention (``prefix`` is the ``mqtt_prefix`` setting, ``urbanmim`` by default)::

    {prefix}/{apikey}/{deviceId}/attrs              default tenant
    {prefix}/{tenant}/{apikey}/{deviceId}/attrs     tenant (may itself contain '/')

The last three levels are fixed, so the tenant is everything between the prefix and the
API key, and a tenant name with slashes stays unambiguous.

Why the acknowledgement is manual: paho acknowledges a QoS-1 PUBLISH as soon as its
``on_message`` returns, i.e. before anything was written. With ``manual_ack`` the agent
sends the PUBACK itself, from the batch's completion callback, after the transaction
holding the measurement committed (a rejected message is acknowledged too: redelivering
it could not make it valid). Together with a persistent session (MQTT 5, Clean Start 0,
a Session Expiry Interval and a fixed client id derived from the store), a message the
broker has accepted for this session is either committed, or redelivered to us after a
restart or reconnection. aiomqtt does not expose manual acks, so the underlying paho
client (``Client._client``) is used for exactly two calls: ``manual_ack_set`` and ``ack``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

from .pipeline import BAD_TOPIC, INTERNAL, Ingestor, Rejected

log = logging.getLogger("urbanmim.ingest.mqtt")
_TENANT = re.compile(r"[A-Za-z0-9_\-.:/]{1,200}")
_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


def default_client_id(db: str) -> str:
    """One MQTT session per store: the id is stable across restarts of the same store (so the
    broker's queued messages come back to it) and differs between stores sharing a broker."""
    return "urbanmim-" + hashlib.sha1(db.encode()).hexdigest()[:16]


def parse_topic(prefix: str, topic: str) -> tuple[str, str, str]:
    """``{prefix}/[{tenant}/]{apikey}/{deviceId}/attrs`` → (tenant, apikey, deviceId)."""
    if not topic.startswith(prefix + "/"):
        raise Rejected(BAD_TOPIC, f"topic {topic!r} is not under {prefix}/")
    parts = topic[len(prefix) + 1:].split("/")
    if len(parts) < 3 or parts[-1] != "attrs" or not parts[-2] or not parts[-3]:
        raise Rejected(BAD_TOPIC, f"topic {topic!r} is not {prefix}/[tenant/]apikey/deviceId/attrs")
    tenant = "/".join(parts[:-3])
    if tenant and not _TENANT.fullmatch(tenant):
        raise Rejected(BAD_TOPIC, f"invalid tenant {tenant!r} in topic {topic!r}")
    return tenant, parts[-3], parts[-2]


class MqttAgent:
    def __init__(self, ingestor: Ingestor, url: str, *, client_id: str, prefix: str, session_expiry: int,
                 receive_maximum: int):
        self.ingestor = ingestor
        self.url = url
        self.client_id = client_id
        self.prefix = prefix.strip("/")
        self.session_expiry = session_expiry
        self.receive_maximum = receive_maximum
        self.stats = ingestor.stats
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self.stats.mqtt.update(enabled=True, url=_safe_url(self.url), clientId=self.client_id,
                               topic=f"{self.prefix}/#")
        self._task = asyncio.create_task(self._run(), name="iot-mqtt")

    async def stop(self) -> None:
        """Stop reading, let every received message's batch commit and be acknowledged, disconnect."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 20)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._session()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as e:  # broker down, refused, connection lost: retry in the background
                self.stats.mqtt.update(connected=False, subscribed=False, lastError=str(e) or type(e).__name__)
                delay = _BACKOFF[min(failures, len(_BACKOFF) - 1)]
                (log.warning if failures == 0 else log.debug)(
                    "MQTT broker %s not reachable or connection lost (%s): device ingestion over MQTT is paused, "
                    "retrying in the background (next in %.0f s); the HTTP ingestion API still works",
                    _safe_url(self.url), e, delay)
                failures += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    def _client(self) -> Any:
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        u = urlsplit(self.url)
        if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"mqtt_url must be mqtt://host:port or mqtts://host:port, not {self.url!r}")
        tls = u.scheme in ("mqtts", "ssl")
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry
        props.ReceiveMaximum = self.receive_maximum
        client = aiomqtt.Client(u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883),
                                identifier=self.client_id, protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
                                properties=props, username=unquote(u.username) if u.username else None,
                                password=unquote(u.password) if u.password else None,
                                tls_context=ssl.create_default_context() if tls else None, keepalive=30)
        client._client.manual_ack_set(True)   # PUBACK only after the commit (see the module doc)
        _read_many(client._client)
        return client

    async def _session(self) -> None:
        from paho.mqtt.subscribeoptions import SubscribeOptions

        client = self._client()
        async with client:
            self.stats.mqtt.update(connected=True, lastError=None, connects=self.stats.mqtt["connects"] + 1)
            log.info("MQTT: connected to %s as %s, subscribing to %s/#", _safe_url(self.url), self.client_id,
                     self.prefix)
            # retainHandling=1: retained messages only when the subscription is new, so a
            # reconnect does not ingest the same retained measurement again
            await client.subscribe(f"{self.prefix}/#", options=SubscribeOptions(qos=1, retainHandling=1))
            self.stats.mqtt["subscribed"] = True
            lost = asyncio.get_running_loop().create_future()
            reader = asyncio.create_task(self._read(client, lost))
            stopping = asyncio.create_task(self._stopping.wait())
            try:
                await asyncio.wait({reader, stopping, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                reader.cancel()
                stopping.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
                # every message received so far is committed (and acknowledged) before we leave
                await self.ingestor.drain()
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                raise reader.exception()  # type: ignore[misc]
            if lost.done():
                raise ConnectionError(lost.result())
        self.stats.mqtt.update(connected=False, subscribed=False)

    async def _read(self, client: Any, lost: asyncio.Future[str]) -> None:
        paho = client._client
        async for msg in client.messages:
            mid, qos = msg.mid, msg.qos

            def done(written: int, err: str | None, mid: int = mid, qos: int = qos) -> None:
                if written < 0:
                    # the transaction failed: do not acknowledge; reconnecting makes the broker
                    # redeliver every unacknowledged message of the session
                    if not lost.done():
                        lost.set_result(f"store write failed ({err}); reconnecting for redelivery")
                    return
                if qos > 0 and not lost.done():
                    paho.ack(mid, qos)
            await self._handle(str(msg.topic), msg.payload, done)

    async def _handle(self, topic: str, payload: Any, done: Any) -> None:
        self.stats.messages["mqtt"] += 1
        try:
            tenant, key, device_id = parse_topic(self.prefix, topic)
            if not isinstance(payload, (bytes, bytearray, str)):
                payload = bytes(payload or b"")
            muts = await self.ingestor.prepare(tenant, device_id, key, payload)
        except Rejected as r:
            self.stats.reject(r.reason, r.detail, f"mqtt {topic}")
            self.ingestor.submit("", [], done)     # acknowledged in order, nothing written
            return
        except Exception as e:   # a bug must cost one message, not the agent
            log.exception("MQTT: unexpected error on %s", topic)
            self.stats.reject(INTERNAL, f"{type(e).__name__}: {e}", f"mqtt {topic}")
            self.ingestor.submit("", [], done)
            return
        self.ingestor.submit(tenant, muts, done)


def _read_many(paho: Any, most: int = 256) -> None:
    """Let one socket-readable event decode up to ``most`` packets instead of one.

    Why: aiomqtt calls paho's ``loop_read`` once per readable event, and paho then reads a
    single packet when no QoS-2 exchange is pending — so every QoS-1 message cost a whole
    event-loop iteration (measured: ~1,800 messages/s end to end). This instance-level
    override reads until the socket is drained (paho's own loop, with a bound); if paho's
    internals ever change shape, the stock ``loop_read`` stays in place.
    """
    if not all(hasattr(paho, a) for a in ("_packet_read", "_loop_rc_handle", "_sock")):
        return
    from paho.mqtt.client import MQTTErrorCode

    def loop_read(max_packets: int = 1) -> Any:
        for _ in range(most):
            if paho._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = paho._packet_read()
            if rc > 0:
                return paho._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
        return MQTTErrorCode.MQTT_ERR_SUCCESS
    paho.loop_read = loop_read


def _safe_url(url: str) -> str:
    u = urlsplit(url)
    if u.password:
        return url.replace(f":{u.password}@", ":***@")
    return url
