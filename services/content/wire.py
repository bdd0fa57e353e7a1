"""Write messages on the wire without copying their data.

Through Python protobuf a 1 MiB ``WriteContentRequest`` costs copies of its
data at every step: parsing it, reading ``.data``, building the request that
passes it on and serialising that.  On the Write path, where every byte of an
ingest goes, ``parse_write`` parses only the small fields and hands the data
over as a view of the message received, and ``encode_write`` lays a WRITE
request out around a view with one copy.  Field numbers are containerd's
(api/services/content/v1/content.proto).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.message import DecodeError

from api.containerd.services.content.v1 import content_pb2
from services.content.store import Data
from services.harness.decoding import read_varint

_DATA = 6  # WriteContentRequest.data
_WRITE_PREFIX = bytes([1 << 3, content_pb2.WRITE])  # action (field 1, varint) = WRITE
_OFFSET_TAG = bytes([5 << 3])  # offset (field 5, varint)
_DATA_TAG = bytes([_DATA << 3 | 2])  # data (field 6, length-delimited)


class WriteRequest:
    """A ``WriteContentRequest`` as the Content servicer reads it; ``data`` is a
    view of the message it came in."""

    __slots__ = ("action", "data", "expected", "labels", "offset", "ref", "total")

    def __init__(self, header: content_pb2.WriteContentRequest, data: Data) -> None:
        self.action: content_pb2.WriteAction.ValueType = header.action
        self.ref: str = header.ref
        self.total: int = header.total
        self.expected: str = header.expected
        self.offset: int = header.offset
        self.labels: Mapping[str, str] = header.labels
        self.data = data


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # a negative int64 takes ten bytes, as protobuf writes it
    while True:
        low = value & 0x7F
        value >>= 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


class _WriteParser:
    """``parse_write(raw)``: a WriteRequest, or DecodeError where protobuf would
    raise it.  ``descriptor`` names the message for the edge's error."""

    descriptor = content_pb2.WriteContentRequest.DESCRIPTOR

    def __call__(self, raw: Data | bytearray) -> WriteRequest:
        view = memoryview(raw)
        spans = []
        pos = 0
        while pos < len(view):
            start = pos
            key, pos = read_varint(view, pos)
            number, wire_type = key >> 3, key & 7
            if wire_type == 0:
                _, pos = read_varint(view, pos)
            elif wire_type == 2:
                length, pos = read_varint(view, pos)
                if number == _DATA:
                    spans.append((start, pos, pos + length))
                pos += length
            elif wire_type == 1:
                pos += 8
            elif wire_type == 5:
                pos += 4
            else:
                raise DecodeError(f"wire type {wire_type} of field {number}")
            if pos > len(view):
                raise DecodeError("truncated message")
        if len(spans) == 1:
            tag, start, end = spans[0]
            header = content_pb2.WriteContentRequest.FromString(b"".join((view[:tag], view[end:])))
            return WriteRequest(header, view[start:end])
        # No data, or data repeated (the last one counts): as protobuf reads it.
        full = content_pb2.WriteContentRequest.FromString(bytes(view))
        return WriteRequest(full, full.data)


parse_write = _WriteParser()


def encode_write(offset: int, data: Data) -> bytes:
    """A serialised WRITE request of ``data`` at ``offset`` (one copy of the data)."""
    size = memoryview(data).nbytes
    parts: list[Data] = [_WRITE_PREFIX]
    if offset:
        parts += [_OFFSET_TAG, _encode_varint(offset)]
    parts += [_DATA_TAG, _encode_varint(size), data]
    return b"".join(parts)


def serialize_request(message: Any) -> bytes:
    """A Write stream's request serializer: ``encode_write``'s bytes go as they are."""
    if isinstance(message, bytes):
        return message
    out: bytes = message.SerializeToString()
    return out
