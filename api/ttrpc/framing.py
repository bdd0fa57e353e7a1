"""ttrpc's frame: a 10-byte header, then the message.

Header (github.com/containerd/ttrpc, channel.go and PROTOCOL.md): data length
(uint32, big-endian, header excluded), stream id (uint32, big-endian; odd when
the client opened the stream), message type (uint8), flags (uint8, meaning
depends on the type).  Data frames and the flags arrived with streaming in
ttrpc 1.2 (containerd 1.7); a 1.1 peer (containerd 1.6) sends and expects
requests and responses with no flags only, which is what a unary call is.
"""

from __future__ import annotations

import struct

from api import errdefs

HEADER = struct.Struct(">IIBB")
HEADER_SIZE = HEADER.size  # 10

# ttrpc refuses any frame whose data is longer than this (messageLengthMax).
DEFAULT_MAX = 4 << 20

# Message types.
REQUEST = 0x1
RESPONSE = 0x2
DATA = 0x3

# Flags.  On a request: REMOTE_CLOSED = the client sends no data frames (the
# server streams back), REMOTE_OPEN = data frames follow; neither = unary.
# On a data frame: REMOTE_CLOSED = the sender's last frame, NO_DATA = the
# frame carries no message (not even an empty one).
FLAG_REMOTE_CLOSED = 0x1
FLAG_REMOTE_OPEN = 0x2
FLAG_NO_DATA = 0x4

MAX_STREAM_ID = 0xFFFFFFFF


def pack_header(length: int, stream_id: int, mtype: int, flags: int) -> bytes:
    return HEADER.pack(length, stream_id, mtype, flags)


def oversize_error(length: int, limit: int) -> errdefs.ResourceExhausted:
    """The error for a message over the limit, in ttrpc's words (both directions)."""
    return errdefs.ResourceExhausted(
        f"message length {length} exceed maximum message size of {limit}"
    )
