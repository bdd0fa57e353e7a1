"""Go's time.ParseDuration, for the duration strings containerd configs carry
("100ms", "1m30s", "-1.5h", "0")."""

from __future__ import annotations

import re

from api import errdefs

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration; InvalidArgument naming the text otherwise."""
    s = text
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise errdefs.InvalidArgument(f"time: invalid duration {text!r}")
    total = 0.0
    while s:
        m = _PART.match(s)
        if m is None:
            raise errdefs.InvalidArgument(f"time: invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        s = s[m.end() :]
    return sign * total
