"""Records as etcd values: a JSON object of the record's columns.

The columns are ``daemon.metadata.codec``'s (the SQLite backend's), keyed by
name; ``bytes`` columns are base64 text.  A column missing from a stored
value (written by an older layout) decodes as its field's default.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from daemon.metadata import codec

_BLOB = "BLOB"


def encode(record: Any) -> bytes:
    out: dict[str, Any] = {}
    for col, value in zip(codec.columns(type(record)), codec.encode(record), strict=True):
        if col.sql_type == _BLOB and value is not None:
            assert isinstance(value, bytes)
            value = base64.b64encode(value).decode()
        out[col.name] = value
    return json.dumps(out, separators=(",", ":")).encode()


def decode(record: type[Any], raw: bytes) -> Any:
    data = json.loads(raw)
    defaults = {f.name: f for f in dataclasses.fields(record)}
    row: list[Any] = []
    for col in codec.columns(record):
        if col.name not in data:
            f = defaults[col.name]
            default = (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            )
            row.append(col.encode(default))
            continue
        value = data[col.name]
        if col.sql_type == _BLOB and value is not None:
            value = base64.b64decode(value)
        row.append(value)
    return codec.decode(record, row)
