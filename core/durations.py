"""Human durations: `30s`, `4h`, `1h30m`, `30d`. A number needs its unit; only `0` may go
without one (a zero is zero in any unit)."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
_BARE = re.compile(r"\d+(?:\.\d+)?")

USAGE = "a duration like 30s, 15m, 4h, 1h30m or 30d"


def parse_duration(value: object) -> float:
    """Seconds in `value`; raises ValueError with a sentence saying what to write instead.

    A bare number other than zero is refused: `run_timeout: 30` could mean seconds or
    minutes, and guessing wrong is an outage (or a run killed after half a minute)."""
    if isinstance(value, bool):
        raise ValueError(f"expected {USAGE}, got {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float's range
            raise ValueError(f"expected {USAGE}, got a number too large") from None
        bare = True
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        bare = _BARE.fullmatch(text) is not None
        if bare:
            seconds = float(text)
        elif _WHOLE.fullmatch(text):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
        else:
            raise ValueError(f"expected {USAGE}, got {value!r}")
    else:
        raise ValueError(f"expected {USAGE}, got {value!r}")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"expected {USAGE}, got {value!r}")
    if bare and seconds != 0:
        n = value.strip() if isinstance(value, str) else _plain(seconds)
        raise ValueError(f"{n} has no unit: write {n}s, {n}m or {n}h")
    return seconds


def duration_text(seconds: float) -> str:
    """`seconds` as text that parse_duration reads back exactly: '4h', '50ms', '0.3s'."""
    short = format_duration(seconds)
    if parse_duration(short) == seconds:
        return short
    return _plain(seconds) + "s"


def _plain(number: float) -> str:
    """A number as digits and a point, as a duration is written: 30, 1.5, 0.0000001."""
    text = repr(float(number))
    if "e" in text:  # repr's exponent form is not a duration
        text = f"{number:.9f}".rstrip("0")
    return text.removesuffix(".0").rstrip(".")


def format_duration(seconds: float) -> str:
    """The shortest readable form: 90 -> '1m30s', 14400 -> '4h'."""
    # Compare the rounded value, or 0.9996 would read "1000ms".
    if round(seconds * 1000) < 1000:
        return f"{seconds * 1000:.0f}ms" if seconds else "0s"
    remaining = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])
