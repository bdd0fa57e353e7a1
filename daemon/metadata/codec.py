"""Field-by-field encoding of records into scalar columns and back.

Each record field becomes one column: strings and integers as they are,
``bytes | None`` as a blob (NULL for None), mappings and descriptors as
compact JSON text (byte values base64-encoded).  A backend that stores a
record as one document (etcd) can put the same columns in a JSON object.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import typing
from collections.abc import Callable, Mapping
from typing import Any

from daemon.metadata.records import Descriptor

Scalar = str | int | bytes | None


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    encode: Callable[[Any], Scalar]
    decode: Callable[[Any], Any]


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _enc_labels(value: Mapping[str, str]) -> str:
    return _json(dict(value))


# The columns hold compact JSON written by _json: the decoder's scanner can
# take it directly (json.loads' checks cost more than the parse).
_scan = json.JSONDecoder().raw_decode


def _loads(text: str) -> Any:
    return _scan(text)[0]


def _dec_labels(text: str | None) -> dict[str, str]:
    return _loads(text) if text and text != "{}" else {}


def _enc_bytes_map(value: Mapping[str, bytes]) -> str:
    return _json({k: base64.b64encode(v).decode() for k, v in value.items()})


def _dec_bytes_map(text: str | None) -> dict[str, bytes]:
    if not text or text == "{}":
        return {}
    return {k: base64.b64decode(v) for k, v in _loads(text).items()}


def _enc_descriptor(d: Descriptor) -> str:
    return _json(
        {
            "mediaType": d.media_type,
            "digest": d.digest,
            "size": d.size,
            "annotations": dict(d.annotations),
        }
    )


def _dec_descriptor(text: str) -> Descriptor:
    v = _loads(text)
    return Descriptor(v["mediaType"], v["digest"], int(v["size"]), dict(v.get("annotations") or {}))


def _enc_opt_bytes(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


def _dec_opt_bytes(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


_BY_TYPE: dict[str, tuple[str, Callable[[Any], Scalar], Callable[[Any], Any]]] = {
    "str": ("TEXT NOT NULL", str, str),
    "int": ("INTEGER NOT NULL", int, int),
    "bytes | None": ("BLOB", _enc_opt_bytes, _dec_opt_bytes),
    "Labels": ("TEXT NOT NULL", _enc_labels, _dec_labels),
    "Mapping[str, bytes]": ("TEXT NOT NULL", _enc_bytes_map, _dec_bytes_map),
    "Descriptor": ("TEXT NOT NULL", _enc_descriptor, _dec_descriptor),
}


_COLUMNS: dict[type[Any], tuple[Column, ...]] = {}


def columns(record: type[Any]) -> tuple[Column, ...]:
    """The columns of a record type, in field order."""
    cached = _COLUMNS.get(record)
    if cached is not None:
        return cached
    cols = []
    for f in dataclasses.fields(record):
        kind = f.type if isinstance(f.type, str) else typing.get_type_hints(record)[f.name]
        try:
            sql_type, enc, dec = _BY_TYPE[str(kind)]
        except KeyError:
            raise TypeError(f"{record.__name__}.{f.name}: no column codec for {kind}") from None
        cols.append(Column(f.name, sql_type, enc, dec))
    _COLUMNS[record] = tuple(cols)
    return _COLUMNS[record]


def field_columns(record: type[Any], names: tuple[str, ...]) -> tuple[Column, ...]:
    """The columns of the fields ``names``; ValueError when ``record`` lacks one."""
    cols = {c.name: c for c in columns(record)}
    unknown = [n for n in names if n not in cols]
    if unknown or not names:
        raise ValueError(f"{record.__name__} has no fields {unknown} (it has {list(cols)})")
    return tuple(cols[n] for n in names)


def encode(record: Any) -> tuple[Scalar, ...]:
    return tuple(c.encode(getattr(record, c.name)) for c in columns(type(record)))


# Columns whose stored value is already the field's value.
_IDENTITY: frozenset[Callable[[Any], Any]] = frozenset({str, int})

_DECODERS: dict[type[Any], Callable[[typing.Sequence[Any]], Any]] = {}


def _conversions(cols: tuple[Column, ...]) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    """(position, decode) of the columns whose stored value is not the field's."""
    return tuple((i, c.decode) for i, c in enumerate(cols) if c.decode not in _IDENTITY)


def _decoder(record: type[Any]) -> Callable[[typing.Sequence[Any]], Any]:
    """A row -> record function for ``record``: lists of thousands of rows are
    decoded on every List, so the per-row work is kept to what is needed."""
    cols = columns(record)
    names = tuple(c.name for c in cols)
    convert = _conversions(cols)
    new = object.__new__

    def decode_row(row: typing.Sequence[Any]) -> Any:
        if len(row) != len(names):
            raise ValueError(f"{record.__name__}: {len(row)} columns, expected {len(names)}")
        values = list(row)
        for i, fn in convert:
            values[i] = fn(values[i])
        # The records are frozen dataclasses with no __post_init__: filling
        # the instance dict skips the per-field object.__setattr__ of
        # their generated __init__.
        obj = new(record)
        obj.__dict__.update(zip(names, values, strict=True))
        return obj

    return decode_row


_FIELDS_DECODERS: dict[
    tuple[type[Any], tuple[str, ...]], Callable[[typing.Sequence[Any]], tuple[Any, ...]]
] = {}


def fields_decoder(
    record: type[Any], names: tuple[str, ...]
) -> Callable[[typing.Sequence[Any]], tuple[Any, ...]]:
    """A function from a row of the columns ``names`` (in that order) to the
    tuple of their fields' values; ValueError when ``record`` lacks one."""
    fn = _FIELDS_DECODERS.get((record, names))
    if fn is None:
        fn = _FIELDS_DECODERS[record, names] = _fields_decoder(record, names)
    return fn


def _fields_decoder(
    record: type[Any], names: tuple[str, ...]
) -> Callable[[typing.Sequence[Any]], tuple[Any, ...]]:
    convert = _conversions(field_columns(record, names))

    def decode_fields(row: typing.Sequence[Any]) -> tuple[Any, ...]:
        values = list(row)
        for i, fn in convert:
            values[i] = fn(values[i])
        return tuple(values)

    return decode_fields


def decode(record: type[Any], row: typing.Sequence[Any]) -> Any:
    fn = _DECODERS.get(record)
    if fn is None:
        fn = _DECODERS[record] = _decoder(record)
    return fn(row)
