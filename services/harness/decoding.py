"""Requests that do not decode become InvalidArgument naming the field.

grpc runs a handler's request deserializer before the handler; when protobuf
refuses the bytes (mostly a string field holding invalid UTF-8, which proto3
forbids and upb enforces), grpc logs a traceback and answers UNKNOWN with the
exception's text, which names no field.  ``tolerant`` wraps a deserializer so
that it returns an ``Undecodable`` instead of raising; the EdgeInterceptor
answers that with InvalidArgument.  To name the field, the wire bytes are
walked against the message's descriptor (only then, on the error path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

Deserializer = Callable[[bytes], Any]


class Undecodable:
    """Stands in for a request that did not decode; ``message`` says why."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def tolerant(deserializer: Deserializer) -> Deserializer:
    """``deserializer``, answering an ``Undecodable`` where it would raise DecodeError."""
    owner = getattr(deserializer, "__self__", None)
    # A deserializer of our own (not a message's FromString) may name its message.
    descriptor: Descriptor | None = getattr(deserializer, "descriptor", None)
    if isinstance(owner, type) and issubclass(owner, Message):
        descriptor = owner.DESCRIPTOR  # type: ignore[assignment]  # upb's is the same API

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as e:
            return Undecodable(explain(descriptor, bytes(data), e))

    return deserialize


def explain(descriptor: Descriptor | None, data: bytes, error: Exception) -> str:
    """Why ``data`` does not decode as a ``descriptor`` message, naming the field."""
    if descriptor is None:
        return f"request does not decode: {error}"
    path = bad_utf8_field(descriptor, data)
    if path is not None:
        return f'invalid UTF-8 in string field "{path}" of {descriptor.full_name}'
    return f"request does not decode as {descriptor.full_name}: {error}"


# protobuf's own nesting limit: deeper input fails to decode before we look.
_MAX_DEPTH = 100


class Truncated(DecodeError):
    """Protobuf wire bytes that end inside a field."""


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it (Truncated past the end)."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise Truncated("message ends inside a field")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def bad_utf8_field(descriptor: Descriptor, data: bytes, prefix: str = "") -> str | None:
    """The dotted path of the first string field in ``data`` that is not UTF-8
    (map entries read ``<map>.key`` / ``<map>.value``); None if there is none
    or the bytes are malformed before one is reached."""
    try:
        return _walk(descriptor, data, prefix, 0)
    except Truncated:
        return None


def _walk(descriptor: Descriptor, data: bytes, prefix: str, depth: int) -> str | None:
    if depth > _MAX_DEPTH:
        raise Truncated("message ends inside a field")
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, pos = read_varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = read_varint(data, pos)
            end = pos + length
            if end > len(data):
                raise Truncated("message ends inside a field")
            field = descriptor.fields_by_number.get(number)
            if field is not None:
                found = _check(field, data[pos:end], prefix, depth)
                if found is not None:
                    return found
            pos = end
        else:  # groups (proto2 only) and invalid wire types
            raise Truncated("message ends inside a field")
    return None


def _check(field: FieldDescriptor, chunk: bytes, prefix: str, depth: int) -> str | None:
    path = prefix + field.name
    if field.type == FieldDescriptor.TYPE_STRING:
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            return path
        return None
    if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
        return _walk(field.message_type, chunk, path + ".", depth + 1)
    return None
