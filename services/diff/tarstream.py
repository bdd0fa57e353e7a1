"""Reading a tar stream forward-only, header by header, as Go's archive/tar does.

Headers are decoded by the standard library (``tarfile.TarInfo.fromtarfile``:
ustar, GNU long names, PAX records, base-256 numbers, sparse maps); the
stream, the end-of-archive rules and the error handling are ours, so that a
corrupt header is an error - ``tarfile.TarFile`` would quietly stop there -
and so that member data is copied straight from the decompressed chunks into
files without another buffer.

Differences from Python's tarfile that follow Go (which containerd uses):
PAX global headers are not applied to later members, and a single zero
block followed by data is an invalid header.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from api import errdefs
from services.diff.compression import Hasher, Source

BLOCK = tarfile.BLOCKSIZE
_ZERO_BLOCK = bytes(BLOCK)
_MAX_NS = (1 << 63) - 1


class TarStream:
    """A forward-only file over a Source; every byte pulled is hashed into ``hasher`` if given."""

    def __init__(self, source: Source, hasher: Hasher | None = None) -> None:
        self._source = source
        self.hasher = hasher
        self._buf = memoryview(b"")
        self._pos = 0
        self._eof = False
        # The last whole block read: after a header is decoded, that header.
        self.last_block = b""

    def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = self._source.get()
        if not chunk:
            self._eof = True
            return False
        if self.hasher is not None:
            self.hasher.update(chunk)
        self._buf = memoryview(chunk)
        return True

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        parts: list[bytes | memoryview] = []
        want = n if n >= 0 else 1 << 62
        while want > 0:
            if not self._buf and not self._fill():
                break
            piece = self._buf[:want]
            self._buf = self._buf[len(piece) :]
            parts.append(piece)
            want -= len(piece)
        data = b"".join(parts)
        self._pos += len(data)
        if len(data) == BLOCK:
            self.last_block = data
        return data

    def _forward(self, n: int, fd: int = -1) -> int:
        """Consume ``n`` bytes (into ``fd`` unless it is -1); answers how many there were."""
        done = 0
        while done < n:
            if not self._buf and not self._fill():
                break
            piece = self._buf[: n - done]
            self._buf = self._buf[len(piece) :]
            if fd >= 0:
                _write_all(fd, piece)
            done += len(piece)
        self._pos += done
        return done

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._pos + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < self._pos:
            raise io.UnsupportedOperation("tar stream only seeks forward")
        self._forward(target - self._pos)
        return self._pos

    def copy_to(self, fd: int, n: int) -> None:
        """Write the next ``n`` bytes to ``fd``; InvalidArgument if the stream ends first."""
        if self._forward(n, fd) != n:
            raise errdefs.InvalidArgument("invalid archive: unexpected EOF in file data")

    def skip_to(self, pos: int) -> None:
        want = pos - self._pos
        if want > 0 and self._forward(want) != want:
            raise errdefs.InvalidArgument("invalid archive: unexpected EOF")

    def drain(self) -> None:
        """Read (and hash) what follows the archive, as containerd does."""
        self._buf = memoryview(b"")
        while self._fill():
            self._pos += len(self._buf)
            self._buf = memoryview(b"")


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


class _Reader:
    """Just enough of a TarFile for ``TarInfo.fromtarfile``."""

    encoding = "utf-8"
    errors = "surrogateescape"

    def __init__(self, fileobj: TarStream) -> None:
        self.fileobj = fileobj
        self.offset = 0

    @property
    def pax_headers(self) -> dict[str, str]:
        # Go does not carry a global header's records over to later members.
        return {}

    @pax_headers.setter
    def pax_headers(self, value: dict[str, str]) -> None:
        pass


@dataclass
class Entry:
    """One member, with the fields containerd's apply uses."""

    name: str
    type: bytes
    linkname: str
    mode: int
    uid: int
    gid: int
    size: int
    devmajor: int
    devminor: int
    mtime_ns: int
    atime_ns: int
    xattrs: dict[str, bytes] = field(default_factory=dict)
    info: tarfile.TarInfo | None = None

    @property
    def sparse(self) -> bool:
        return self.info is not None and self.info.sparse is not None


def _pax_time(value: str) -> int | None:
    """A PAX time record ("secs[.frac]") in nanoseconds; None when malformed."""
    secs, _, frac = value.partition(".")
    try:
        whole = int(secs)
        digits = (frac + "000000000")[:9] if frac else "0"
        if frac and not frac.isdigit():
            return None
        nanos = int(digits)
    except ValueError:
        return None
    sign = -1 if secs.strip().startswith("-") else 1
    return whole * 1_000_000_000 + sign * nanos


def _bound(ns: int) -> int:
    # containerd's boundTime: times before the epoch or past what a 64-bit
    # timespec holds in nanoseconds become the epoch.
    return ns if 0 <= ns <= _MAX_NS else 0


def _entry(info: tarfile.TarInfo, header: bytes) -> Entry:
    pax: Mapping[str, str] = info.pax_headers
    mtime_ns = _pax_time(pax["mtime"]) if "mtime" in pax else None
    if mtime_ns is None:
        mtime_ns = int(info.mtime) * 1_000_000_000
    atime_ns = _pax_time(pax["atime"]) if "atime" in pax else None
    if atime_ns is None:
        atime_ns = _gnu_atime(header)
    xattrs = {
        key[len("SCHILY.xattr.") :]: value.encode("utf-8", "surrogateescape")
        for key, value in pax.items()
        if key.startswith("SCHILY.xattr.")
    }
    # containerd sets atime to the later of atime and mtime.
    atime_ns = max(atime_ns, mtime_ns) if atime_ns is not None else mtime_ns
    return Entry(
        name=info.name,
        type=info.type,
        linkname=info.linkname,
        mode=info.mode,
        uid=info.uid,
        gid=info.gid,
        size=info.size,
        devmajor=info.devmajor,
        devminor=info.devminor,
        mtime_ns=_bound(mtime_ns),
        atime_ns=_bound(atime_ns),
        xattrs=xattrs,
        info=info,
    )


def _gnu_atime(buf: bytes) -> int | None:
    # Go reads the old GNU header's atime field; Python's tarfile does not.
    if len(buf) < BLOCK or buf[257:265] != tarfile.GNU_MAGIC:
        return None
    return _numeric(buf[345:357]) * 1_000_000_000


def _numeric(field: bytes) -> int:
    """A tar numeric field: octal text, or base-256 when the high bit is set."""
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return -(256 ** (len(field) - 1) - value) if field[0] == 0xFF else value
    text = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text or b"0", 8)
    except ValueError:
        return 0


def entries(stream: TarStream) -> Iterator[Entry]:
    """The members of the archive; the caller may read each one's data from ``stream``.

    Raises InvalidArgument for a corrupt or truncated archive.
    """
    reader = _Reader(stream)
    while True:
        start = stream.tell()
        try:
            info = tarfile.TarInfo.fromtarfile(reader)  # type: ignore[arg-type]
        except tarfile.EOFHeaderError:  # type: ignore[attr-defined]
            # One zero block; Go wants the next to be zero (or the end) too.
            rest = stream.read(BLOCK)
            if rest and rest != _ZERO_BLOCK:
                raise errdefs.InvalidArgument(
                    f"invalid archive: invalid tar header at offset {start}"
                ) from None
            return
        except tarfile.EmptyHeaderError:  # type: ignore[attr-defined]
            return  # the stream ends on a header boundary: a clean end, as in Go
        except tarfile.TruncatedHeaderError:  # type: ignore[attr-defined]
            raise errdefs.InvalidArgument("invalid archive: unexpected EOF in header") from None
        except tarfile.TarError as e:
            raise errdefs.InvalidArgument(f"invalid archive at offset {start}: {e}") from None
        except UnicodeError as e:
            raise errdefs.InvalidArgument(f"invalid archive at offset {start}: {e}") from None
        yield _entry(info, stream.last_block)
        stream.skip_to(reader.offset)


def open_member(stream: TarStream, entry: Entry) -> tarfile.ExFileObject:
    """A file reading a sparse member's data (holes as zeros)."""
    assert entry.info is not None
    return tarfile.ExFileObject(_Reader(stream), entry.info)  # type: ignore[arg-type]
