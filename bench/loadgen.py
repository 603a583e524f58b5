"""Load generators: wrk for per-request figures, a small async client for batches.

wrk (C, event-driven, epoll) is used for every per-request figure because it
spends ~20-25 us of CPU per request, against several hundred for a Python client;
on a 2-core machine a Python client would take a large share of the CPU it is
supposed to measure. It is pinned to the other core than the server.

Batch upserts (1,000 entities, ~670 KB per request) are driven by a small
asyncio client in this process, pinned to the load generator's core, with
bodies generated before the clock starts: the client then spends well under a
millisecond per batch against the server's tens of ms, so the figure is
dominated by server work. Client CPU is measured and reported so that this
stays checked rather than assumed.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CLK_TCK = os.sysconf("SC_CLK_TCK")
LUA_DIR = Path(__file__).resolve().parent / "lua"
WRK_MISSING = (
    "wrk is not installed. Install it with:\n"
    "    apt-get update && apt-get install -y wrk      (Debian/Ubuntu)\n"
    "    brew install wrk                              (macOS)"
)


@dataclass
class Measurement:
    """One measured figure: ok responses, latency percentiles, statuses, CPU use."""

    requests: int  # all completed responses
    ok: int  # 2xx responses (207 multi-status excluded: it reports failures)
    items: int  # entities handled in ok responses (== ok for per-request figures)
    seconds: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    socket_errors: dict[str, int] = field(default_factory=dict)
    sample: str = ""  # first non-2xx response: "status body..."
    server_cpu: float = 0.0  # fraction of one core
    client_cpu: float = 0.0  # fraction of one core
    other_cpu: float = 0.0  # cores used by anything else on the machine (noise indicator)
    segment_rates: list[float] = field(default_factory=list)  # batch loads: items/s per segment
    server_rss_mib: float = 0.0  # server's VmRSS right after the figure (set by the caller)

    @property
    def rate(self) -> float:
        """Items per second, counting only successful responses."""
        return self.items / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return self.requests - self.ok


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent in processes so far (/proc/stat), to tell how much
    *other* processes ran during a figure: the 2-core machine may be shared.

    irq/softirq time is left out: it is mostly the loopback traffic of the benchmark
    itself, and is charged to no process. Steal time (the hypervisor running someone
    else) is counted: it is noise too."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + steal) / CLK_TCK


def is_ok(status: int | str) -> bool:
    s = int(status)
    return 200 <= s < 300 and s != 207


def check_wrk() -> str:
    """Path of wrk, or exit with installation instructions."""
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(WRK_MISSING)
    return path


def wrk_version() -> str:
    out = subprocess.run(["wrk", "--version"], check=False, capture_output=True, text=True)
    first = (out.stdout or out.stderr).splitlines()[0]  # "wrk 4.1.0 [epoll] Copyright..."
    return first.split(" [")[0].strip()


def run_wrk(
    url: str,
    script: str,
    args: list[str],
    duration: int,
    connections: int,
    cpu: int | None,
    server_cpu_seconds: Callable[[], float],
    threads: int = 1,
) -> Measurement:
    """Run wrk with ``bench/lua/<script>`` and parse its BENCH_JSON line."""
    cmd = (["taskset", "-c", str(cpu)] if cpu is not None else []) + [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_DIR / script),
        url,
        "--",
        *args,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    s0, b0 = server_cpu_seconds(), machine_busy_seconds()
    t0 = time.monotonic()
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=duration + 120)
    wall = time.monotonic() - t0
    s1, b1 = server_cpu_seconds(), machine_busy_seconds()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    statuses = {k: int(v) for k, v in data["statuses"].items()}
    ok = sum(v for k, v in statuses.items() if is_ok(k))
    errors = {k: int(v) for k, v in data["errors"].items() if k != "status" and v}
    client = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Measurement(
        requests=int(data["requests"]),
        ok=ok,
        items=ok,
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["latency_us"]["p50"] / 1000,
        p99_ms=data["latency_us"]["p99"] / 1000,
        statuses=statuses,
        socket_errors=errors,
        sample=data["sample"],
        server_cpu=(s1 - s0) / wall,
        client_cpu=client / wall,
        other_cpu=max(0.0, (b1 - b0) - (s1 - s0) - client) / wall,
    )


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q / 100 * len(sorted_values)))]


class _Connection:
    """Minimal keep-alive HTTP/1.1 client connection (Content-Length or chunked replies).

    Hand-written rather than httpx: with ~670 KB bodies, httpx's pure-Python
    HTTP parsing saturated the client core before the bare ASGI app did, so the
    batch ceiling measured the client. This costs a few syscalls per request.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.writer.write(head.encode("latin-1"))
        self.writer.write(body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length, chunked, close = None, False, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.partition(b":")
            key, value = key.strip().lower(), value.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value
            elif key == b"connection":
                close = value == b"close"
        if chunked:
            parts = []
            while size := int((await self.reader.readline()).split(b";")[0], 16):
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            while (await self.reader.readline()) not in (b"\r\n", b""):
                pass  # trailers
            data = b"".join(parts)
        elif length is not None:
            data = await self.reader.readexactly(length)
        elif status in (204, 304) or status < 200:
            data = b""
        else:
            data, close = await self.reader.read(), True
        if close:
            await self.close()
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def _post_all(
    url: str, bodies: Iterator[tuple[int, bytes]], concurrency: int, headers: dict[str, str]
) -> tuple[list[float], Counter[str], int, str]:
    parts = urlsplit(url)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    items = 0
    sample = ""

    async def worker() -> None:
        nonlocal items, sample
        conn = _Connection(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            for count, body in bodies:  # shared iterator: each body is sent once
                t0 = time.perf_counter()
                status, data = await conn.post(parts.path, body, headers)
                latencies.append(time.perf_counter() - t0)
                statuses[str(status)] += 1
                if is_ok(status):
                    items += count
                elif not sample:
                    sample = f"{status} {data[:300].decode(errors='replace')}"
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses, items, sample


def run_batches(
    url: str,
    segments: Iterator[list[tuple[int, bytes]]],
    concurrency: int,
    server_cpu_seconds: Callable[[], float],
) -> Measurement:
    """POST every ``(entity_count, body)`` to ``url`` with ``concurrency`` connections.

    Bodies come in segments (lists): each segment is generated untimed, then
    posted timed, so generation never competes with the client, and a 1M load
    does not hold all ~670 MB of bodies at once. The rate of each segment is
    kept, which shows how the server's write rate evolves as the store grows.
    """
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    items, wall, server, client, busy, sample = 0, 0.0, 0.0, 0.0, 0.0, ""
    rates: list[float] = []
    for segment in segments:
        before = resource.getrusage(resource.RUSAGE_SELF)
        s0, b0 = server_cpu_seconds(), machine_busy_seconds()
        t0 = time.monotonic()
        lat, st, n, smp = asyncio.run(_post_all(url, iter(segment), concurrency, headers))
        seconds = time.monotonic() - t0
        server += server_cpu_seconds() - s0
        busy += machine_busy_seconds() - b0
        after = resource.getrusage(resource.RUSAGE_SELF)
        client += (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        latencies += lat
        statuses.update(st)
        items, wall, sample = items + n, wall + seconds, sample or smp
        rates.append(round(n / seconds, 1))
    latencies.sort()
    ok = sum(v for k, v in statuses.items() if is_ok(k))
    return Measurement(
        requests=len(latencies),
        ok=ok,
        items=items,
        seconds=wall,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        statuses=dict(statuses),
        sample=sample,
        server_cpu=server / wall if wall else 0.0,
        client_cpu=client / wall if wall else 0.0,
        other_cpu=max(0.0, busy - server - client) / wall if wall else 0.0,
        segment_rates=rates,
    )
