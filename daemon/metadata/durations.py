"""Go durations ("1m30s", "100ms") in config values, as containerd writes them."""

from __future__ import annotations

import re

from api import errdefs

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration ("1m30s", "100ms", "0"); InvalidArgument otherwise."""
    if text in ("0", ""):
        return 0.0
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text.lstrip("+"):
        raise errdefs.InvalidArgument(f"invalid duration {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)
