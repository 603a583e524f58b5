"""Rate limits per client: one token bucket per ``Principal.client``.

Why per client and in memory: a misbehaving app or device should slow down itself, not the
city's other users, and a check must cost nothing next to a request (two float operations).
With N processes each keeps its own buckets, so the effective limit is N times the setting;
docs/security.md says so. The platform itself (``system``) is never limited.
"""

from __future__ import annotations

import time

from urbanmim.errors import TooManyRequests

MAX_CLIENTS = 100_000


class RateLimiter:
    def __init__(self, rate: float, burst: float):
        self.rate = rate                 # tokens per second (0: no limit)
        self.burst = max(burst, 1.0)
        self.buckets: dict[str, tuple[float, float]] = {}   # client -> (tokens, last refill, monotonic)

    def check(self, client: str, cost: float = 1.0) -> None:
        """Take ``cost`` tokens from ``client``'s bucket or raise 429 with the wait in Retry-After."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        tokens, last = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < cost:
            self.buckets[client] = (tokens, now)
            raise TooManyRequests(f"rate limit of {self.rate:g} requests/s (burst {self.burst:g}) exceeded "
                                  f"for client {client}", retry_after=(cost - tokens) / self.rate)
        if len(self.buckets) >= MAX_CLIENTS and client not in self.buckets:
            self._prune(now)
        self.buckets[client] = (tokens - cost, now)

    def _prune(self, now: float) -> None:
        """Forget clients whose bucket is full again (they lose nothing by being forgotten)."""
        full = (self.burst / self.rate) if self.rate > 0 else 0
        for c, (_, last) in list(self.buckets.items()):
            if now - last >= full:
                del self.buckets[c]
