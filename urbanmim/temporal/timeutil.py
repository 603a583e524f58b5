"""Instants and durations of the temporal API: ISO 8601 text ↔ epoch milliseconds (UTC).

Why integers: instance rows are range-scanned and bucketed by hour, and an integer
column makes both plain comparisons and integer division (also in PostgreSQL).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from urbanmim.errors import BadRequestData

HOUR_MS = 3_600_000
_DURATION = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
                       r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def to_ms(text: str) -> int:
    """ISO 8601 date-time → epoch ms; a value without offset is taken as UTC."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(round(dt.timestamp() * 1000))


def parse_instant(text: str | None, what: str) -> int:
    if not text:
        raise BadRequestData(f"{what} is required")
    try:
        if not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", text.strip()):
            raise ValueError(text)
        return to_ms(text)
    except ValueError:
        raise BadRequestData(f"{what} is not an ISO 8601 date-time: {text!r}") from None


def opt_ms(text: object) -> int | None:
    """ms of a stored timestamp member, None when absent or unparsable (stored data is not re-validated)."""
    if not isinstance(text, str):
        return None
    try:
        return to_ms(text)
    except ValueError:
        return None


def iso(ms: int) -> str:
    """Epoch ms → ``YYYY-MM-DDTHH:MM:SS[.fff]Z`` (milliseconds only when not zero)."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ms % 1000:03d}Z" if ms % 1000 else base + "Z"


class Duration:
    """An ISO 8601 duration; years/months are calendar steps, the rest a fixed number of ms."""

    def __init__(self, text: str):
        m = _DURATION.fullmatch(text.strip()) if text else None
        if not m or text.strip() in ("P", "PT") or text.strip().endswith("T"):
            raise BadRequestData(f"aggrPeriodDuration is not an ISO 8601 duration: {text!r}")
        y, mo, w, d, h, mi, s = m.groups()
        self.months = int(y or 0) * 12 + int(mo or 0)
        self.fixed_ms = int(round(((int(w or 0) * 7 + int(d or 0)) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60
                                   + float(s or 0)) * 1000))
        if self.months == 0 and self.fixed_ms <= 0:
            raise BadRequestData(f"aggrPeriodDuration must be longer than zero: {text!r}")

    def add(self, ms: int) -> int:
        """``ms`` plus one period."""
        if self.months:
            dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
            total = dt.month - 1 + self.months
            year, month = dt.year + total // 12, total % 12 + 1
            day = dt.day
            while True:
                try:
                    dt = dt.replace(year=year, month=month, day=day)
                    break
                except ValueError:
                    day -= 1
            ms = int(round(dt.timestamp() * 1000))
        return ms + self.fixed_ms

    @property
    def whole_hours(self) -> bool:
        """Every period boundary stays hour-aligned when the origin is (so hour buckets can answer)."""
        return self.fixed_ms % HOUR_MS == 0
