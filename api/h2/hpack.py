"""HPACK (RFC 7541) decoding for the request headers of ``api.h2``.

A request's header block is decoded once per call, so this is on the hot
path: after a client's first call nearly every field is a one-byte
reference into the dynamic table, and decoding is a table lookup per byte.
Huffman-coded literals are decoded by ``api.h2.huffman``.
Strings are kept as ``str`` (UTF-8, or Latin-1 for bytes that are not).
"""

from __future__ import annotations

from collections import deque

from api.h2.huffman import decode as decode_huffman

Field = tuple[str, str]


class DecodeError(Exception):
    """The header block does not decode (a connection error)."""


STATIC: tuple[Field, ...] = (
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
)
_STATIC_COUNT = len(STATIC)
DEFAULT_TABLE_SIZE = 4096


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class Decoder:
    def __init__(self, max_table_size: int = DEFAULT_TABLE_SIZE) -> None:
        self.max_allowed = max_table_size  # what we announced (SETTINGS_HEADER_TABLE_SIZE)
        self.max_size = max_table_size  # what the encoder chose, up to that
        self.size = 0
        self.table: deque[Field] = deque()  # newest first
        # Changes of the dynamic table so far: a block decodes to the same
        # fields as long as this count is the same.
        self.changes = 0

    def _field(self, index: int) -> Field:
        if 0 < index <= _STATIC_COUNT:
            return STATIC[index - 1]
        i = index - _STATIC_COUNT - 1
        if 0 <= i < len(self.table):
            return self.table[i]
        raise DecodeError(f"header index {index} is out of range")

    def _add(self, field: Field) -> None:
        size = 32 + len(field[0].encode()) + len(field[1].encode())
        self.table.appendleft(field)
        self.size += size
        self.changes += 1
        self._evict()

    def _evict(self) -> None:
        while self.size > self.max_size and self.table:
            name, value = self.table.pop()
            self.size -= 32 + len(name.encode()) + len(value.encode())

    def decode(self, data: bytes) -> list[Field]:
        out: list[Field] = []
        pos, end = 0, len(data)
        try:
            while pos < end:
                byte = data[pos]
                if byte & 0x80:  # indexed field
                    index, pos = _integer(data, pos, 7)
                    out.append(self._field(index))
                elif byte & 0x40:  # literal, added to the table
                    index, pos = _integer(data, pos, 6)
                    field, pos = self._literal(data, pos, index)
                    self._add(field)
                    out.append(field)
                elif byte & 0x20:  # table size update
                    size, pos = _integer(data, pos, 5)
                    if size > self.max_allowed:
                        raise DecodeError(f"table size {size} over {self.max_allowed}")
                    self.max_size = size
                    self.changes += 1
                    self._evict()
                else:  # literal, not indexed (0000) or never indexed (0001)
                    index, pos = _integer(data, pos, 4)
                    field, pos = self._literal(data, pos, index)
                    out.append(field)
        except IndexError:
            raise DecodeError("header block ends inside a field") from None
        return out

    def _literal(self, data: bytes, pos: int, index: int) -> tuple[Field, int]:
        if index:
            name = self._field(index)[0]
        else:
            name, pos = _string(data, pos)
        value, pos = _string(data, pos)
        return (name, value), pos


def _integer(data: bytes, pos: int, bits: int) -> tuple[int, int]:
    limit = (1 << bits) - 1
    value = data[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise DecodeError("header integer too large")


def _string(data: bytes, pos: int) -> tuple[str, int]:
    huffman = data[pos] & 0x80
    length, pos = _integer(data, pos, 7)
    end = pos + length
    if end > len(data):
        raise DecodeError("header string runs past the block")
    raw = data[pos:end]
    if huffman:
        try:
            raw = decode_huffman(raw)
        except ValueError as e:
            raise DecodeError(f"bad Huffman string: {e}") from None
    return _text(raw), end
