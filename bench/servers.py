"""Start, pin, watch and always stop the servers under test.

Each server runs in its own session (so Ctrl-C in the terminal reaches the
harness, which then stops it deliberately) and is pinned with ``taskset`` to the
core the load generator does not use. Every started server is registered and
stopped on normal exit, on exceptions, on Ctrl-C and on SIGTERM/SIGHUP.
Memory and CPU are read from /proc for the server's whole process tree, in case
the server forks.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """A server process started by the harness."""

    name: str
    cmd: list[str]
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


_running: list[Server] = []


def free_port() -> int:
    """A currently free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(name: str, cmd: list[str], port: int, cpu: int | None, log_path: Path, cwd: Path) -> Server:
    """Start ``cmd`` in ``cwd`` pinned to ``cpu`` (if given), stdout/stderr to ``log_path``."""
    full = (["taskset", "-c", str(cpu)] if cpu is not None else []) + cmd
    log = open(log_path, "wb")  # noqa: SIM115 - owned by the child for its lifetime
    proc = subprocess.Popen(full, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
    log.close()
    server = Server(name, full, port, proc, log_path)
    _running.append(server)
    return server


def wait_ready(server: Server, timeout: float = 60.0) -> None:
    """Block until the server accepts TCP connections on its port.

    uvicorn binds only after the ASGI lifespan startup completed, so an accepted
    connection means the app is ready. Fails early, with the server's log, if
    the process exits.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with code {server.proc.returncode} before listening.\n"
                f"command: {' '.join(server.cmd)}\n--- log tail ---\n{server.log_tail()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(
        f"{server.name} did not listen on 127.0.0.1:{server.port} within {timeout:.0f}s.\n"
        f"--- log tail ---\n{server.log_tail()}"
    )


def stop(server: Server, grace: float = 10.0) -> None:
    """SIGTERM the server's process group, SIGKILL it after ``grace`` seconds."""
    if server in _running:
        _running.remove(server)
    if server.proc.poll() is not None:
        return
    try:
        os.killpg(server.proc.pid, signal.SIGTERM)
        server.proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
    except ProcessLookupError:
        pass


def stop_all() -> None:
    """Stop every server still running (registered with atexit)."""
    while _running:
        stop(_running[-1], grace=5.0)


def install_cleanup() -> None:
    """Stop servers on exit, and turn SIGTERM/SIGHUP into a normal (cleaning) exit."""
    atexit.register(stop_all)

    def _exit(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGHUP, _exit)
    # Ctrl-C raises KeyboardInterrupt even if SIGINT was inherited as ignored
    # (as for a background job of a non-interactive shell).
    signal.signal(signal.SIGINT, signal.default_int_handler)


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (via /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                pass
    return out


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak RSS) in KiB, summed over the process tree."""
    total = {"VmRSS": 0, "VmHWM": 0}
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in total:
                    total[key] += int(value.split()[0])
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds consumed so far by the process tree."""
    ticks = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return ticks / CLK_TCK


def disk_bytes(directory: Path) -> int:
    """Bytes used by the files in ``directory`` (DB file plus any -wal/-shm)."""
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def wait_idle(pid: int, below: float = 0.05, window: float = 0.25, timeout: float = 300.0) -> float:
    """Wait until the server uses < ``below`` of a core over ``window`` s; return seconds waited.

    A server keeps executing requests whose clients are gone (e.g. the backlog of a
    wrk warm-up, or deferred work after a bulk load); without this drain, slow
    requests of one step would be billed to the next one.
    """
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        c0 = cpu_seconds(pid)
        time.sleep(window)
        if (cpu_seconds(pid) - c0) / window < below:
            break
    return time.monotonic() - t0
