"""MQTT device ingestion, end to end: measurements/s from publish to committed in the store.

Not a test: it measures. It starts a real ``urbanmim serve`` (fresh SQLite file in a temp
dir, its MQTT agent on the local Mosquitto), provisions ``--devices`` devices through
``/iot/v1/devices``, then ``--publishers`` processes publish ``--messages`` QoS-1 messages
in total (each carrying ``--bulk`` measurements, round-robin over the devices), and the
clock stops when ``GET /iot/v1/stats`` reports every measurement written (committed:
the agent counts a measurement only after its transaction committed, and acknowledges
the MQTT message only then). Each measurement is one NGSI-LD update of the device's
entity plus its temporal-history instances.

    .venv/bin/python -m bench.ingest_mqtt                       # 20k single-measurement messages
    .venv/bin/python -m bench.ingest_mqtt --bulk 10             # 10 measurements per message
    .venv/bin/python -m bench.ingest_mqtt --synchronous FULL    # fsync per commit (the default of serve)

Figures on the 2-core development machine (Mosquitto 2.0.11, Python 3.11, SQLite WAL), see the
last lines this script prints:

    --publishers 1                      20,000 msgs x 1 measurement   ~2,400 measurements/s (2,400 msgs/s)
    --publishers 1 --bulk 10 --messages 5000   x 10 measurements      ~5,900 measurements/s (590 msgs/s)
    in-process pipeline, no MQTT (prepare + batch write)              ~7,200 measurements/s

The publisher, Mosquitto and the server share the 2 cores. Single-measurement messages are
bound by the per-message cost of the MQTT client path (paho decoding in Python, one PUBACK
each); bulk messages by the writer (one temporal instance per measurement).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _publisher(args: tuple[str, str, list[str], int, int, int, int]) -> float:
    """One publishing process: paho with a big in-flight window, QoS 1, waits for every PUBACK."""
    import paho.mqtt.client as mqtt

    prefix, key, devices, start, count, bulk, qos = args
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", 1883)
    c.loop_start()
    t0 = time.perf_counter()
    infos = []
    for i in range(start, start + count):
        dev = devices[i % len(devices)]
        ms = [{"t": (i * bulk + j) % 400 / 10, "h": j, "ts": (1_700_000_000_000 + i * bulk + j)} for j in range(bulk)]
        body = json.dumps(ms[0] if bulk == 1 else ms).encode()
        infos.append(c.publish(f"{prefix}/bench/{key}/{dev}/attrs", body, qos=qos))
    for info in infos:
        info.wait_for_publish(60)
    took = time.perf_counter() - t0
    c.loop_stop()
    c.disconnect()
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--bulk", type=int, default=1, help="measurements per message")
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--qos", type=int, default=1)
    ap.add_argument("--synchronous", default="NORMAL", help="SQLite synchronous of the server (NORMAL or FULL)")
    ap.add_argument("--linger-ms", default="2")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.conftest import Server, free_port

    tag = uuid.uuid4().hex[:8]
    prefix, cid, key = f"urbanmim-bench/{tag}", f"urbanmim-bench-{tag}", "bench-key-0001"
    with tempfile.TemporaryDirectory() as tmp:
        env = {"URBANMIM_MQTT_URL": "mqtt://127.0.0.1:1883", "URBANMIM_MQTT_PREFIX": prefix,
               "URBANMIM_MQTT_CLIENT_ID": cid, "URBANMIM_MQTT_SESSION_EXPIRY": "60",
               "URBANMIM_SQLITE_SYNCHRONOUS": a.synchronous, "URBANMIM_INGEST_LINGER_MS": a.linger_ms,
               "URBANMIM_LOG_LEVEL": "warning"}
        srv = Server(Path(tmp) / "bench.db", port=a.port or free_port(), extra_env=env).start()
        iot = srv.url.replace("/ngsi-ld/v1", "/iot/v1")
        h = {"NGSILD-Tenant": "bench"}
        try:
            devices = [f"d{i}" for i in range(a.devices)]
            for i in range(0, len(devices), 500):
                r = httpx.post(f"{iot}/devices", headers=h, timeout=60, json=[
                    {"deviceId": d, "apiKey": key, "entityType": "WeatherObserved",
                     "attributes": [{"key": "t", "name": "temperature", "unitCode": "CEL"},
                                    {"key": "h", "name": "relativeHumidity"}]} for d in devices[i:i + 500]])
                r.raise_for_status()
            deadline = time.time() + 10
            while not httpx.get(f"{iot}/stats").json()["mqtt"].get("subscribed"):
                if time.time() > deadline:
                    raise SystemExit("the agent did not subscribe (is Mosquitto running? scripts/install-mosquitto)")
                time.sleep(0.05)
            per = a.messages // a.publishers
            jobs = [(prefix, key, devices, p * per, per, a.bulk, a.qos) for p in range(a.publishers)]
            total = per * a.publishers * a.bulk
            t0 = time.perf_counter()
            with mp.get_context("spawn").Pool(a.publishers) as pool:
                res = pool.map_async(_publisher, jobs)
                last, stats = -1, {}
                while True:
                    stats = httpx.get(f"{iot}/stats").json()
                    done = stats["measurements"] + stats["rejectedTotal"]
                    if done >= total:
                        break
                    if done == last and time.perf_counter() - t0 > 120:
                        raise SystemExit(f"stalled at {done}/{total}: {stats}")
                    last = done
                    time.sleep(0.02)
                took = time.perf_counter() - t0
                pub_times = res.get(120)
        finally:
            srv.stop()
    print(f"messages={per * a.publishers} bulk={a.bulk} measurements={total} devices={a.devices} "
          f"publishers={a.publishers} qos={a.qos} synchronous={a.synchronous} cpus={os.cpu_count()}")
    print(f"publish (all PUBACKs): {max(pub_times):.2f} s   end to end (all committed): {took:.2f} s")
    print(f"=> {total / took:,.0f} measurements/s, {per * a.publishers / took:,.0f} messages/s; "
          f"batches={stats['batches']} largest={stats['largestBatch']} rejected={stats['rejectedTotal']}")
    return 0 if stats["rejectedTotal"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
