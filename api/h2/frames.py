"""HTTP/2 frames (RFC 9113) and the gRPC bits carried in them.

Only what a gRPC server needs: the frame header, the frame and settings
numbers, the few header fields a server emits (encoded once, HPACK literals
and static-table references without the dynamic table, so the encoder keeps
no state), gRPC's five-byte message prefix, its ``grpc-timeout`` and
``grpc-message`` encodings.  Decoding of request headers is ``hpack``'s.
"""

from __future__ import annotations

import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types.
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Settings.
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

# Error codes (RST_STREAM, GOAWAY).
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
MAX_WINDOW = (1 << 31) - 1

# length (24 bits) and type packed in one word, then flags, then stream id.
HEADER = struct.Struct(">IBI")
_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")
_GOAWAY = struct.Struct(">II")
MESSAGE_PREFIX = struct.Struct(">BI")


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(len(payload) << 8 | kind, flags, stream_id) + payload


def headers(stream_id: int, block: bytes, end_stream: bool, max_frame: int) -> bytes:
    """A header block as HEADERS, then CONTINUATION frames when it is larger
    than the peer's largest frame."""
    flags = END_STREAM if end_stream else 0
    if len(block) <= max_frame:
        return frame(HEADERS, flags | END_HEADERS, stream_id, block)
    parts = [block[i : i + max_frame] for i in range(0, len(block), max_frame)]
    out = [frame(HEADERS, flags, stream_id, parts[0])]
    out.extend(frame(CONTINUATION, 0, stream_id, p) for p in parts[1:-1])
    out.append(frame(CONTINUATION, END_HEADERS, stream_id, parts[-1]))
    return b"".join(out)


def settings(values: dict[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(k, v) for k, v in values.items()))


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    return [_SETTING.unpack_from(payload, i) for i in range(0, len(payload) - 5, 6)]


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))


def rst_stream(stream_id: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, _U32.pack(code))


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, _GOAWAY.pack(last_stream_id, code) + debug)


def u32(payload: bytes) -> int:
    value: int = _U32.unpack_from(payload)[0]
    return value


# --------------------------------------------------------------------- HPACK out


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: str, value: bytes | str) -> bytes:
    """A header field as a literal without indexing (new name, no Huffman)."""
    raw_name = name.encode("ascii")
    raw_value = value.encode("latin-1") if isinstance(value, str) else value
    return (
        b"\x00"
        + _integer(len(raw_name), 7, 0)
        + raw_name
        + _integer(len(raw_value), 7, 0)
        + raw_value
    )


# ":status: 200" is static entry 8; "content-type" is static name 31.
RESPONSE_HEADERS = b"\x88" + _integer(31, 4, 0) + _integer(16, 7, 0) + b"application/grpc"

_STATUS_FIELDS = tuple(literal("grpc-status", str(code)) for code in range(17))


# grpc-core clients refuse a response whose metadata passes 8-16 KiB (the whole
# call fails RESOURCE_EXHAUSTED); a longer status message is cut to keep its code.
MAX_STATUS_MESSAGE = 7 << 10


def status_fields(code: int, message: str) -> bytes:
    field = (
        _STATUS_FIELDS[code]
        if 0 <= code < len(_STATUS_FIELDS)
        else literal("grpc-status", str(code))
    )
    if message:
        encoded = percent_encode(message)
        if len(encoded) > MAX_STATUS_MESSAGE:
            cut = encoded.rfind(b"%", MAX_STATUS_MESSAGE - 2, MAX_STATUS_MESSAGE)
            encoded = encoded[: cut if cut >= 0 else MAX_STATUS_MESSAGE] + b"..."
        field += literal("grpc-message", encoded)
    return field


def percent_encode(message: str) -> bytes:
    """gRPC's grpc-message encoding: UTF-8, bytes outside 0x20-0x7E and '%' escaped."""
    raw = message.encode("utf-8", "replace")
    if all(0x20 <= b <= 0x7E and b != 0x25 for b in raw):
        return raw
    return b"".join(bytes((b,)) if 0x20 <= b <= 0x7E and b != 0x25 else b"%%%02X" % b for b in raw)


_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_timeout(value: str) -> float | None:
    """Seconds of a ``grpc-timeout`` value (at most 8 digits and a unit); None if malformed."""
    if len(value) < 2 or len(value) > 9 or not value[:-1].isdigit():
        return None
    unit = _TIMEOUT_UNITS.get(value[-1])
    return None if unit is None else int(value[:-1]) * unit
