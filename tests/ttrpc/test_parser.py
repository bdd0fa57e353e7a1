"""The frame reader against arbitrary read boundaries (property test, no socket)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from api.ttrpc.connection import FrameProtocol, Inbox
from api.ttrpc.framing import HEADER
from api.ttrpc.status import ConnectionClosed

LIMIT = 64

Event = tuple[str, int, int, int, bytes | int]


class Recorder(FrameProtocol):
    def __init__(self) -> None:
        super().__init__(LIMIT, "test")
        self.events: list[Event] = []

    def frame_received(self, stream_id: int, mtype: int, flags: int, data: bytes) -> None:
        self.events.append(("frame", stream_id, mtype, flags, data))

    def oversize_received(self, stream_id: int, mtype: int, flags: int, length: int) -> None:
        self.events.append(("oversize", stream_id, mtype, flags, length))

    def stream_full(self, inbox: Inbox[object]) -> None:
        raise AssertionError("no inbox here")

    def lost(self, error: ConnectionClosed) -> None:
        pass


frames = st.lists(
    st.tuples(
        st.integers(0, 2**32 - 1),  # stream id
        st.integers(0, 255),  # type
        st.integers(0, 255),  # flags
        st.integers(0, 3 * LIMIT),  # length: some over the limit
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(frames=frames, cuts=st.lists(st.integers(1, 50), max_size=60))
def test_any_chunking_yields_the_same_frames(
    frames: list[tuple[int, int, int, int]], cuts: list[int]
) -> None:
    wire = b""
    expected: list[Event] = []
    for i, (sid, mtype, flags, length) in enumerate(frames):
        data = bytes([i % 256]) * length
        wire += HEADER.pack(length, sid, mtype, flags) + data
        if length > LIMIT:
            expected.append(("oversize", sid, mtype, flags, length))
        else:
            expected.append(("frame", sid, mtype, flags, data))

    async def feed() -> list[Event]:
        proto = Recorder()
        rest = wire
        for cut in cuts:
            if not rest:
                break
            proto.data_received(rest[:cut])
            rest = rest[cut:]
        if rest:
            proto.data_received(rest)
        return proto.events

    assert asyncio.run(feed()) == expected
