"""Reading a blob through the Content API as several concurrent range reads.

One Read stream is paced by per-message work on both ends and by HTTP/2
flow control; a few streams over consecutive ranges keep the socket busy.
Ranges are fetched ``parallel`` at a time, each buffered whole (at most
``segment`` bytes), and handed on strictly in order, so memory stays below
``parallel * segment`` and the consumer sees one ordinary byte stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from api import errdefs
from services.diff.differ import BlobReader

SEGMENT = 8 << 20
PARALLEL = 3


async def _segment(reader: BlobReader, offset: int, size: int) -> list[bytes]:
    return [chunk async for chunk in reader.chunks(offset, size)]


async def ranged_chunks(
    reader: BlobReader, *, segment: int = SEGMENT, parallel: int = PARALLEL
) -> AsyncGenerator[bytes, None]:
    """The blob's bytes in order; DataLoss when the store returns fewer than its size."""
    size = reader.size
    if size <= segment:
        got = 0
        async for chunk in reader.chunks():
            got += len(chunk)
            yield chunk
        _check(got, size)
        return
    offsets = list(range(0, size, segment))
    pending: list[asyncio.Task[list[bytes]]] = []
    started = 0
    got = 0
    try:
        for _ in offsets:
            while len(pending) < parallel and started < len(offsets):
                start = offsets[started]
                started += 1
                length = min(segment, size - start)
                pending.append(asyncio.ensure_future(_segment(reader, start, length)))
            for chunk in await pending.pop(0):
                got += len(chunk)
                yield chunk
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    _check(got, size)


def _check(got: int, size: int) -> None:
    if got != size:
        raise errdefs.DataLoss(f"content store returned {got} of {size} bytes")
