"""SIGKILL in the middle of a batch ingest loses no acknowledged entity and leaves none half-written."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.slow

ATTRS = ("NO2", "PM10", "PM25", "O3", "temperature")


def make_batch(b: int, size: int) -> list[dict]:
    return [{"id": f"urn:ngsi-ld:AirQualityObserved:b{b}-e{i}", "type": "AirQualityObserved",
             **{a: {"type": "Property", "value": b * 1000 + i + k} for k, a in enumerate(ATTRS)},
             "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.1 + i * 1e-4, 41.4]}}}
            for i in range(size)]


def test_sigkill_during_batch_ingest_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    server = Server(db).start()
    acked: list[int] = []
    sent: list[int] = []
    stop = threading.Event()

    def writer(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            b = worker
            while not stop.is_set():
                sent.append(b)
                try:
                    r = c.post("/entityOperations/upsert", json=make_batch(b, 200))
                except httpx.HTTPError:
                    return  # the server died under us: this batch was never acknowledged
                if r.status_code in (201, 204):
                    acked.append(b)
                b += 4

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.time() + 15
    while len(acked) < 10 and time.time() < deadline:
        time.sleep(0.05)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)   # no chance to flush or clean up
    server.proc.wait()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 10, "the ingest did not get going before the kill"

    restarted = Server(db).start()
    try:
        with httpx.Client(base_url=restarted.url, timeout=30) as c:
            for b in sorted(set(sent)):
                expected = make_batch(b, 200)
                ids = [e["id"] for e in expected]
                found = {}
                for i in range(0, len(ids), 100):
                    r = c.get("/entities", params={"type": "AirQualityObserved", "id": ",".join(ids[i:i + 100]),
                                                 "limit": 100})
                    assert r.status_code == 200
                    found.update({e["id"]: e for e in r.json()})
                if b in acked:
                    assert len(found) == len(ids), f"acknowledged batch {b} lost {len(ids) - len(found)} entities"
                # a batch is one transaction: all of it or none of it
                assert len(found) in (0, len(ids)), f"batch {b} is half-written ({len(found)} of {len(ids)})"
                for e in expected:
                    if e["id"] in found:
                        got = found[e["id"]]
                        for a in ATTRS:
                            assert got[a]["value"] == e[a]["value"], f"{e['id']}.{a} differs"
                        assert got["location"]["value"] == e["location"]["value"]
    finally:
        restarted.kill()
