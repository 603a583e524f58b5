"""Listener state that only counts once the write that caused it commits.

A store runs a write's ChangeListeners inside the write transaction, and may run them more
than once for one write: PostgreSQL retries a call after a deadlock, and its set-form path
decides every mutation (listeners included) before writing, then falls back to the
per-mutation path if PostgreSQL refuses the batch or another process created one of its
entities meanwhile. Listeners that only *return* records (outbox rows, history) are fine —
the records of a discarded run are rolled back with it. A listener that keeps state across
writes is not: the subscription throttle remembered "notified at t" from a discarded run and
then suppressed the notification of the run that committed.

Such a listener stages its state here (``stage``) and reads it back within the attempt
(``get``): the store opens one :class:`WriteAttempt` per transaction attempt, ``commit``s it
after COMMIT, and restores or discards it where it abandons work. Without an open attempt
(the SQLite writer, tools) ``current()`` is None and the listener applies its state at once,
as before. A context variable, not an attribute of the store: concurrent writes of one
process (asyncio tasks) each see their own attempt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator
from contextvars import ContextVar
from typing import Any

_CURRENT: ContextVar[WriteAttempt | None] = ContextVar("urbanmim_write_attempt", default=None)


class WriteAttempt:
    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}
        self._apply: dict[Hashable, Callable[[Any], None]] = {}

    def get(self, key: Hashable, default: Any = None) -> Any:
        return self._values.get(key, default)

    def stage(self, key: Hashable, value: Any, apply: Callable[[Any], None]) -> None:
        """``apply(value)`` runs at commit (the last value staged under ``key`` wins)."""
        self._values[key] = value
        self._apply[key] = apply

    def snapshot(self) -> tuple[dict[Hashable, Any], dict[Hashable, Callable[[Any], None]]]:
        return dict(self._values), dict(self._apply)

    def restore(self, snap: tuple[dict[Hashable, Any], dict[Hashable, Callable[[Any], None]]]) -> None:
        self._values, self._apply = dict(snap[0]), dict(snap[1])

    def discard(self) -> None:
        self._values.clear()
        self._apply.clear()

    def commit(self) -> None:
        for key, fn in self._apply.items():
            fn(self._values[key])
        self.discard()

    @contextlib.contextmanager
    def active(self) -> Iterator[WriteAttempt]:
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)


def current() -> WriteAttempt | None:
    return _CURRENT.get()
