"""Process logging: containerd's level names, text or JSON lines on stderr."""

from __future__ import annotations

import json
import logging
import sys
import time

# containerd accepts these level names; trace maps below debug, fatal/panic above error.
TRACE = 5
LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}
FORMATS = ("text", "json")


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(level: str = "info", fmt: str = "text", name: str = "") -> None:
    """Install one stderr handler on the root logger."""
    if level not in LEVELS:
        raise ValueError(f"--log-level: unknown level {level!r} (one of {', '.join(LEVELS)})")
    if fmt not in FORMATS:
        raise ValueError(f"--log-format: unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    logging.addLevelName(TRACE, "TRACE")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        prefix = f"{name} " if name else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # grpc's own asyncio machinery is chatty at debug.
    logging.getLogger("asyncio").setLevel(max(LEVELS[level], logging.INFO))
