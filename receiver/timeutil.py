"""Time parsing: Alertmanager's RFC 3339 timestamps and the durations used in the config.

Everything returned is UTC-aware; callers pass `now` around instead of reading the clock.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta, timezone

# Go's zero time, which Alertmanager sends as endsAt for a firing alert.
_ZERO_YEAR = 1

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$",
    re.ASCII,
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
}


def utcnow() -> datetime:
    return datetime.now(UTC)


# Alertmanager re-sends the same startsAt with every notification. The cache is bounded in bytes by
# construction: only a value that parses is kept (an exception is never cached), so every key is at most 35
# ASCII characters and every value one datetime or None: about 250 bytes an entry, 2 MB in all (measured in
# tests/unit/test_parse.py).
RFC3339_CACHE_SIZE = 8192


@functools.lru_cache(maxsize=RFC3339_CACHE_SIZE)
def parse_rfc3339(value: str) -> datetime | None:
    """Parse an RFC 3339 timestamp with 0 to 9 fraction digits and any offset.

    Returns None for Go's zero time (year 1), which means "unset". Raises ValueError otherwise.
    """
    m = _RFC3339.fullmatch(value)
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {value[:64]!r}")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if year == _ZERO_YEAR:
        return None
    fraction = m.group(7) or ""
    # Python keeps microseconds: nanoseconds are truncated, which keeps ordering for equal instants.
    micro = int((fraction + "000000")[:6])
    offset = m.group(8)
    if offset in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"bad UTC offset in {value[:64]!r}")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    if second == 60:  # a leap second; PostgreSQL and Python both lack it
        second = 59
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(UTC)
    except (ValueError, OverflowError) as e:  # OverflowError: year 9999 with a negative offset
        raise ValueError(f"invalid date in {value[:64]!r}: {e}") from None


def parse_duration(value: str | int | float) -> timedelta:
    """Parse "90s", "5m", "1h30m", "2d" (or a bare number of seconds) into a timedelta."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 12h")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 30s, 5m or 12h")
    text = value.strip()
    if not text:
        raise ValueError("expected a duration such as 30s, 5m or 12h")
    pos = 0
    total = 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError(f"{value!r} is not a duration such as 30s, 5m, 1h30m or 12h")
    return timedelta(seconds=total)


def format_duration(delta: timedelta) -> str:
    """A short human form: 45s, 12m, 3h 5m, 2d 4h."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)}s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"
