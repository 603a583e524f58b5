"""The ingestion pipeline shared by MQTT and HTTP: validate, map, batch, write, then acknowledge.

Why a batcher: one measurement is one small NGSI-LD update; written one per transaction
the store would spend its time in commits. Measurements arriving within ``linger`` of
each other (or while the previous batch is being committed) go to the store as one
``EntityService.batch`` call per tenant — one transaction for all of them (the SQLite
writer commits every request it finds queued together) — and each message is
acknowledged (MQTT PUBACK, HTTP response) only once that transaction committed.

Rejections (unknown device, wrong key, malformed payload...) are counted per reason in
:class:`Stats`, logged at most once per reason every few seconds (a misconfigured fleet
must not flood the log), acknowledged, and never raised out of the pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from urbanmim.service.entities import EntityService, now_iso
from urbanmim.store.base import Mutation

from .devices import DeviceRegistry
from .mapping import Device, Malformed, measurements_fn, parse_payload, to_fragment

log = logging.getLogger("urbanmim.ingest")

# rejection reasons (the keys of Stats.rejected)
UNKNOWN_DEVICE = "unknown_device"
BAD_KEY = "bad_api_key"
MALFORMED = "malformed_payload"
BAD_TOPIC = "bad_topic"
WRITE_FAILED = "write_failed"
INTERNAL = "internal_error"
REASONS = (UNKNOWN_DEVICE, BAD_KEY, MALFORMED, BAD_TOPIC, WRITE_FAILED, INTERNAL)


class Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass
class Stats:
    """Counters of the agent, served by ``GET /iot/v1/stats``."""

    messages: Counter[str] = field(default_factory=Counter)      # per transport
    measurements: int = 0                                        # written (committed)
    rejected: Counter[str] = field(default_factory=lambda: Counter({r: 0 for r in REASONS}))
    batches: int = 0
    largest_batch: int = 0
    last_log: dict[str, float] = field(default_factory=dict)
    mqtt: dict[str, Any] = field(default_factory=lambda: {"enabled": False, "connected": False, "connects": 0,
                                                          "lastError": None})

    def reject(self, reason: str, detail: str, where: str) -> None:
        self.rejected[reason] += 1
        now = time.monotonic()
        if now - self.last_log.get(reason, -1e9) >= 5.0:
            self.last_log[reason] = now
            log.warning("ingestion: rejected (%s, %s so far) from %s: %s", reason, self.rejected[reason], where,
                        detail)

    def to_json(self) -> dict[str, Any]:
        return {"messages": dict(self.messages), "measurements": self.measurements,
                "rejected": dict(self.rejected), "rejectedTotal": sum(self.rejected.values()),
                "batches": self.batches, "largestBatch": self.largest_batch, "mqtt": dict(self.mqtt)}


@dataclass
class Measurement:
    """One mapped measurement, waiting for its batch."""

    device: Device
    frag: dict[str, Any]


@dataclass
class _Item:
    tenant: str
    mutations: list[Measurement]
    done: Callable[[int, str | None], None]     # (written, error detail) once committed


class Ingestor:
    """Turns (tenant, device, key, payload) into batched writes and calls back after commit."""

    def __init__(self, registry: DeviceRegistry, service: EntityService, *, linger: float = 0.002,
                 max_batch: int = 2000, recorder: Callable[[], Any] = lambda: None):
        self.registry = registry
        self.recorder = recorder          # the temporal recorder, if the temporal component is installed
        self.service = service
        self.linger = linger
        self.max_batch = max_batch
        self.stats = Stats()
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    # ---- front: validation and mapping -----------------------------------------------------------
    async def prepare(self, tenant: str, device_id: str, key: str | None,
                      payload: bytes | str) -> list[Measurement]:
        """Check the device and key, map the payload; raises :class:`Rejected`."""
        dev = await self.registry.lookup(tenant, device_id)
        if dev is None:
            raise Rejected(UNKNOWN_DEVICE, f"no device {device_id!r} in tenant {tenant or '(default)'!r}")
        if key is None or not await self.registry.verify(dev, key):
            raise Rejected(BAD_KEY, f"wrong API key for device {device_id!r}")
        try:
            items = parse_payload(payload)
            received = now_iso()
            return [Measurement(dev, to_fragment(dev, m, received)) for m in items]
        except Malformed as e:
            raise Rejected(MALFORMED, f"device {device_id!r}: {e}") from None

    def submit(self, tenant: str, mutations: list[Measurement], done: Callable[[int, str | None], None]) -> None:
        """Queue a message's writes (may be empty: a rejected message is acknowledged in order)."""
        self._queue.put_nowait(_Item(tenant, mutations, done))

    async def write(self, tenant: str, mutations: list[Measurement]) -> tuple[int, str | None]:
        """Submit and wait for the commit (the HTTP path)."""
        fut: asyncio.Future[tuple[int, str | None]] = asyncio.get_running_loop().create_future()

        def done(n: int, err: str | None) -> None:
            if not fut.done():
                fut.set_result((n, err))
        self.submit(tenant, mutations, done)
        return await fut

    async def drain(self) -> None:
        """Wait until everything submitted so far was written (or failed) and called back."""
        if self._task is None or self._task.done():
            return
        await self.write("", [])

    # ---- back: the batcher ----------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="iot-ingestor")

    async def stop(self) -> None:
        """Finish what is queued (so it is committed and acknowledged), then stop."""
        if self._task is None:
            return
        self._queue.put_nowait(_Item("", [], _STOP))
        try:
            await asyncio.wait_for(self._task, 15)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()
        self._task = None

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first.done is _STOP:
                return
            if self.linger and self._queue.qsize() < self.max_batch:
                await asyncio.sleep(self.linger)
            batch = [first]
            n = len(first.mutations)
            stop = False
            while n < self.max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item.done is _STOP:
                    stop = True
                    break
                batch.append(item)
                n += len(item.mutations)
            try:
                await self._write(batch, n)
            except Exception:       # never let the batcher die: the items are failed, not acknowledged
                log.exception("ingestion: batch write failed")
                for item in batch:
                    item.done(-1, "the write failed")
            if stop:
                return

    async def _write(self, batch: list[_Item], n: int) -> None:
        """One store call per tenant, one mutation per entity (see ``measurements_fn``)."""
        recorder = self.recorder()
        groups: dict[str, dict[str, list[Measurement]]] = {}
        for item in batch:
            per_entity = groups.setdefault(item.tenant, {})
            for m in item.mutations:
                per_entity.setdefault(m.device.entity_id, []).append(m)
        tenants = [t for t, g in groups.items() if g]
        calls = []
        for t in tenants:
            muts = [Mutation(eid, measurements_fn(ms[0].device, [m.frag for m in ms], recorder))
                    for eid, ms in groups[t].items()]
            calls.append(self.service.batch(t, muts))
        results = await asyncio.gather(*calls)
        failed: dict[tuple[str, str], str] = {}
        for t, outs in zip(tenants, results, strict=True):
            for o in outs:
                if o.error is not None:
                    failed[(t, o.entity_id)] = f"{o.entity_id}: {o.error}"
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, n)
        for item in batch:
            errs = [failed[(item.tenant, m.device.entity_id)] for m in item.mutations
                    if (item.tenant, m.device.entity_id) in failed]
            written = len(item.mutations) - len(errs)
            self.stats.measurements += written
            for e in errs:
                self.stats.reject(WRITE_FAILED, e, "store")
            item.done(written, errs[0] if errs else None)


def _STOP(n: int, err: str | None) -> None:   # sentinel "done" of the stop marker
    return None
