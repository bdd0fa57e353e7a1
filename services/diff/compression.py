"""Layer compression: detection, streaming decompression, compression, digests.

Behaviour follows containerd's ``archive/compression`` (v1.6.20): a layer
declared compressed is decoded by what its first bytes say (gzip magic, zstd
frame or skippable frame), anything else is read as plain tar; gzip streams
may hold several members.

gzip decoding prefers the fastest decoder installed: ISA-L's inflate (the
``isal`` package, 2-3x zlib's speed, in-process and GIL-free), else
``unpigz`` as containerd uses it (on PATH, unless ``CONTAINERD_DISABLE_PIGZ``
is true), else zlib.

Every decoder here is a pipeline stage that runs on its own thread, pulls
chunks from a ``Source`` and hands bounded pieces of output to a sink, so a
small blob can never make one step allocate without limit (a "zip bomb"
streams through in 1 MiB pieces).  zlib, zstd and hashlib release the GIL
while they work, so stages run in parallel.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import logging
import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import IO, Protocol, cast

import zstandard

from api import errdefs

isal_zlib: ModuleType | None
try:
    from isal import isal_zlib
except ImportError:  # optional: zlib does the same, slower
    isal_zlib = None

log = logging.getLogger(__name__)

CHUNK = 1 << 20
DISABLE_PIGZ_ENV = "CONTAINERD_DISABLE_PIGZ"

_GZIP_MAGIC = b"\x1f\x8b\x08"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_SKIPPABLE = 0x184D2A50
_ZSTD_SKIPPABLE_MASK = 0xFFFFFFF0

# Bytes the detection wants to see (containerd peeks 10).
DETECT_BYTES = 10


class Compression(enum.Enum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


def detect(head: bytes) -> Compression:
    """The compression the first bytes of a stream show; NONE when neither magic matches."""
    if head.startswith(_GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(_ZSTD_MAGIC):
        return Compression.ZSTD
    if len(head) >= 8:
        (magic,) = struct.unpack("<I", head[:4])
        if magic & _ZSTD_SKIPPABLE_MASK == _ZSTD_SKIPPABLE:
            return Compression.ZSTD
    return Compression.NONE


def find_unpigz(env: Mapping[str, str] | None = None) -> str | None:
    """unpigz's path, unless it is missing or CONTAINERD_DISABLE_PIGZ says no."""
    path = shutil.which("unpigz")
    if path is None:
        return None
    value = (os.environ if env is None else env).get(DISABLE_PIGZ_ENV, "")
    if value.strip().lower() in ("1", "t", "true"):
        return None
    if value and value.strip().lower() not in ("0", "f", "false"):
        log.warning("could not parse %s=%r; using unpigz", DISABLE_PIGZ_ENV, value)
    return path


GZIP_DECODERS = ("auto", "isal", "unpigz", "zlib")


@dataclass(frozen=True)
class GzipDecoder:
    """How gzip layers are decoded: ``kind`` is "isal", "unpigz" (at ``unpigz``) or "zlib"."""

    kind: str
    unpigz: str = ""

    @classmethod
    def choose(cls, preference: str = "auto", env: Mapping[str, str] | None = None) -> GzipDecoder:
        """The decoder for ``preference`` (one of GZIP_DECODERS); ValueError if not installed."""
        unpigz = find_unpigz(env)
        if preference == "auto":
            if isal_zlib is not None:
                return cls("isal")
            return cls("unpigz", unpigz) if unpigz else cls("zlib")
        if preference == "isal" and isal_zlib is None:
            raise ValueError("gzip decoder isal: the isal package is not installed")
        if preference == "unpigz":
            if unpigz is None:
                raise ValueError("gzip decoder unpigz: not on PATH (or CONTAINERD_DISABLE_PIGZ)")
            return cls("unpigz", unpigz)
        if preference not in GZIP_DECODERS:
            raise ValueError(f"unknown gzip decoder {preference!r}")
        return cls(preference)


class Source(Protocol):
    def get(self) -> bytes:
        """The next chunk; b"" at the end."""
        ...


Sink = Callable[[bytes], None]


class Hasher:
    """sha256 and byte count of a stream."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> None:
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()


class HashingSource:
    """A Source that hashes every chunk it passes on."""

    def __init__(self, source: Source, hasher: Hasher) -> None:
        self._source = source
        self.hasher = hasher

    def get(self) -> bytes:
        chunk = self._source.get()
        if chunk:
            self.hasher.update(chunk)
        return chunk


class FdSource:
    """A Source reading a pipe or file descriptor."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def get(self) -> bytes:
        return os.read(self._fd, CHUNK)


def _invalid(kind: str, err: object) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"invalid archive: {kind}: {err}")


def inflate_gzip(source: Source, sink: Sink, *, isal: bool = False) -> None:
    """Decode a gzip stream of one or more members from ``source`` into ``sink``.

    ``isal`` uses ISA-L's inflate (when installed) instead of zlib's.
    """
    module: ModuleType = isal_zlib if isal and isal_zlib is not None else zlib
    errors: tuple[type[Exception], ...] = (zlib.error,)
    if isal_zlib is not None:
        errors += (isal_zlib.error,)
    d = module.decompressobj(16 + zlib.MAX_WBITS)
    fed = False  # whether the current member has seen any input
    try:
        while chunk := source.get():
            data = chunk
            while True:
                fed = fed or bool(data)
                out = d.decompress(data, CHUNK)
                if out:
                    sink(out)
                if d.eof:
                    # Go's reader continues with the next member (multistream).
                    data = d.unused_data
                    d = module.decompressobj(16 + zlib.MAX_WBITS)
                    fed = False
                    if not data:
                        break
                    continue
                data = d.unconsumed_tail
                if not data and len(out) < CHUNK:
                    break
    except errors as e:
        raise _invalid("gzip", e) from None
    if fed:
        raise _invalid("gzip", "unexpected EOF")


class ZstdFrames:
    """Follows the frame structure of a zstd stream without decoding it.

    The streaming decoder bounds its output but says nothing when its input
    ends inside a frame; Go's decoder (containerd's) reports that as an
    unexpected EOF.  Walking the frame and block headers (RFC 8878, section 3)
    costs a few operations per block and tells a complete stream from a
    truncated one, and one followed by garbage.
    """

    _MAGIC = 0xFD2FB528

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = 4
        self._skip = 0
        self._state = "magic"
        self._checksum = False

    def update(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        i = 0
        while i < len(view):
            if self._skip:
                n = min(self._skip, len(view) - i)
                self._skip -= n
                i += n
                continue
            take = view[i : i + self._need - len(self._buf)]
            self._buf += take
            i += len(take)
            if len(self._buf) == self._need:
                header = bytes(self._buf)
                self._buf.clear()
                self._advance(header)

    def _expect(self, state: str, need: int, skip: int = 0) -> None:
        self._state, self._need, self._skip = state, need, skip

    def _advance(self, header: bytes) -> None:
        if self._state == "magic":
            (magic,) = struct.unpack("<I", header)
            if magic == self._MAGIC:
                self._expect("descriptor", 1)
            elif magic & _ZSTD_SKIPPABLE_MASK == _ZSTD_SKIPPABLE:
                self._expect("skippable", 4)
            else:
                raise _invalid("zstd", "invalid frame magic (garbage after the stream?)")
        elif self._state == "skippable":
            (size,) = struct.unpack("<I", header)
            self._expect("magic", 4, size)
        elif self._state == "descriptor":
            fhd = header[0]
            fcs_flag, single = fhd >> 6, (fhd >> 5) & 1
            if fhd & 0x08:
                raise _invalid("zstd", "reserved bit set in frame header")
            self._checksum = bool(fhd & 0x04)
            window = 0 if single else 1
            dictionary = (0, 1, 2, 4)[fhd & 0x03]
            content_size = (1 if single else 0, 2, 4, 8)[fcs_flag]
            self._expect("block", 3, window + dictionary + content_size)
        else:  # block header
            value = int.from_bytes(header, "little")
            last, kind, size = value & 1, (value >> 1) & 3, value >> 3
            if kind == 3:
                raise _invalid("zstd", "reserved block type")
            skip = 1 if kind == 1 else size
            if last:
                self._expect("magic", 4, skip + (4 if self._checksum else 0))
            else:
                self._expect("block", 3, skip)

    def finish(self) -> None:
        """InvalidArgument unless the stream ended right after a whole frame."""
        if self._state != "magic" or self._buf or self._skip:
            raise _invalid("zstd", "unexpected EOF")


class _SourceFile:
    """``read(n)`` over a Source, for zstandard's stream reader; checks the frames it passes."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._buf = memoryview(b"")
        self.frames = ZstdFrames()

    def read(self, n: int = -1) -> bytes:
        if not self._buf:
            chunk = self._source.get()
            self.frames.update(chunk)
            self._buf = memoryview(chunk)
        if n < 0 or n >= len(self._buf):
            out, self._buf = self._buf, memoryview(b"")
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return bytes(out)


def inflate_zstd(source: Source, sink: Sink) -> None:
    """Decode a zstd stream (several frames, skippable frames included) into ``sink``."""
    src = _SourceFile(source)
    reader = zstandard.ZstdDecompressor().stream_reader(
        cast(IO[bytes], src), read_size=CHUNK, read_across_frames=True, closefd=False
    )
    try:
        while out := reader.read(CHUNK):
            sink(out)
    except zstandard.ZstdError as e:
        raise _invalid("zstd", e) from None
    # The reader may stop at a frame's end before the source is exhausted.
    while chunk := src.read(CHUNK):
        del chunk
    src.frames.finish()


def feed(source: Source, pipe: IO[bytes]) -> None:
    """Copy ``source`` into a subprocess's stdin and close it (unpigz's feeder)."""
    try:
        while chunk := source.get():
            pipe.write(chunk)
    except BrokenPipeError:
        # The process ended early; its exit status tells why.
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            pipe.close()


_F_SETPIPE_SZ = 1031


def _widen(fd: int) -> None:
    # 1 MiB pipes instead of 64 KiB: 16x fewer reads, writes and wake-ups.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, CHUNK)


def start_unpigz(path: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [path, "-d", "-c"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert proc.stdin is not None and proc.stdout is not None
    _widen(proc.stdin.fileno())
    _widen(proc.stdout.fileno())
    return proc


def check_unpigz(proc: subprocess.Popen[bytes]) -> None:
    """InvalidArgument when unpigz failed (corrupt data); reaps the process."""
    assert proc.stderr is not None
    with proc.stderr:
        err = proc.stderr.read()
    code = proc.wait()
    if code != 0:
        message = err.decode(errors="replace").strip() or f"exit status {code}"
        raise _invalid("gzip (unpigz)", message)


class Compressor:
    """Incremental compression for the layers ``compare`` writes."""

    def __init__(self, compression: Compression) -> None:
        self.compression = compression
        self._compress: Callable[[bytes], bytes]
        self._flush: Callable[[], bytes]
        if compression is Compression.GZIP:
            # Go's gzip.DefaultCompression is level 6.
            z = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            self._compress, self._flush = z.compress, z.flush
        elif compression is Compression.ZSTD:
            zc = zstandard.ZstdCompressor(level=3).compressobj()
            self._compress, self._flush = zc.compress, zc.flush
        else:
            self._compress, self._flush = bytes, bytes

    def compress(self, data: bytes) -> bytes:
        return self._compress(data)

    def flush(self) -> bytes:
        return self._flush()
