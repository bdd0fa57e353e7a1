"""Applying an OCI layer tar onto a directory, never touching anything outside it.

The behaviour is containerd's ``applyNaive``/``createTarFile``
(v1.6.20:archive/tar.go, tar_unix.go, tar_mostunix.go): names are cleaned and
resolved under the root with symlinks bounded to it; missing parents are
created 0755; ``.wh.NAME`` removes NAME and ``.wh..wh..opq`` clears what
earlier layers put in a directory (``Whiteouts`` decides how); an existing
entry is replaced unless both are directories, which merge; then ownership,
``SCHILY.xattr.*`` (never ``trusted.*``), mode (setuid included) and times
are set, and directory times once more at the end.

The safety is ours: every operation is relative to an open directory found by
``rootdir`` and acts on one name with no-follow semantics (``O_NOFOLLOW``,
``AT_SYMLINK_NOFOLLOW``, linkat without follow, chmod through an ``O_PATH``
descriptor of a non-link), so a symlink in a layer can redirect a name only
to somewhere else inside the root - where containerd puts it too.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import tarfile
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

from api import errdefs
from services.diff.rootdir import Dir, RootDir, clean_parts
from services.diff.tarstream import Entry, TarStream, entries, open_member

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"

_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.GNUTYPE_SPARSE)
_DEVICES = {
    tarfile.CHRTYPE: stat.S_IFCHR,
    tarfile.BLKTYPE: stat.S_IFBLK,
    tarfile.FIFOTYPE: stat.S_IFIFO,
}
_HANDLED = (*_REGULAR, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, *_DEVICES)
_CACHE_SIZE = 64


class Whiteouts(Protocol):
    """How whiteout entries take effect on the target."""

    def opaque(self, directory: Dir, unpacked: set[tuple[str, ...]]) -> None:
        """``directory`` holds ``.wh..wh..opq``; ``unpacked`` are the paths this layer created."""
        ...

    def whiteout(self, directory: Dir, name: str, entry: Entry) -> None:
        """``directory`` holds ``.wh.<name>``."""
        ...


def remove_all(directory: Dir, name: str, st: os.stat_result | None = None) -> bool:
    """Remove ``name`` (a whole tree for a directory) without following links.

    Answers whether a directory or a symlink went, which may change lookups.
    """
    st = st if st is not None else directory.lstat(name)
    if st is None:
        return False
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=directory.fd)
        return True
    try:
        os.unlink(name, dir_fd=directory.fd)
    except FileNotFoundError:
        return False
    return stat.S_ISLNK(st.st_mode)


class RemovingWhiteouts:
    """Whiteouts on a plain directory: remove what they name (containerd's default)."""

    def opaque(self, directory: Dir, unpacked: set[tuple[str, ...]]) -> None:
        for name in sorted(os.listdir(directory.fd)):
            child = (*directory.parts, name)
            if child not in unpacked:
                remove_all(directory, name)
                continue
            st = directory.lstat(name)
            if st is not None and stat.S_ISDIR(st.st_mode):
                sub = directory.child(name)
                try:
                    self.opaque(sub, unpacked)
                finally:
                    sub.close()

    def whiteout(self, directory: Dir, name: str, entry: Entry) -> None:
        remove_all(directory, name)


def _os_error(what: str, err: OSError) -> errdefs.ErrdefsError:
    text = f"{what}: {err.strerror or err}"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return errdefs.ResourceExhausted(text)
    if err.errno in (errno.EPERM, errno.EACCES):
        return errdefs.PermissionDenied(text)
    return errdefs.Unknown(text)


class Extractor:
    """``Extractor(root).apply(stream)`` unpacks one layer under ``root``.

    ``whiteouts`` defaults to removal; ``parents`` (an overlay's lower
    directories, nearest first) give missing parent directories the
    attributes they have below, as containerd's WithParents does.
    """

    def __init__(
        self,
        root: str,
        whiteouts: Whiteouts | None = None,
        parents: Sequence[str] = (),
    ) -> None:
        self._root_path = root
        self._whiteouts = whiteouts or RemovingWhiteouts()
        self._parent_paths = list(parents)

    def apply(self, stream: TarStream) -> int:
        """Unpack the archive; answers the sum of the members' sizes.

        Raises InvalidArgument for an invalid or refused archive and the
        errors of ``_os_error`` when the filesystem fails.
        """
        self._root = RootDir(self._root_path)
        self._lowers = [RootDir(p) for p in self._parent_paths]
        self._cache: OrderedDict[tuple[str, ...], Dir] = OrderedDict()
        self._stale: list[Dir] = []
        try:
            return self._apply(stream)
        finally:
            self._invalidate()
            self._close_stale()
            for lower in self._lowers:
                lower.close()
            self._root.close()

    # -- the member loop ----------------------------------------------------

    def _apply(self, stream: TarStream) -> int:
        size = 0
        dirs: list[tuple[list[str], Entry]] = []
        unpacked: set[tuple[str, ...]] = set()
        for entry in entries(stream):
            self._close_stale()
            size += entry.size
            parts = clean_parts(entry.name)
            if not parts:
                log.debug("file %r ignored: resolved to root", entry.name)
                continue
            try:
                self._member(entry, parts, stream, unpacked, dirs)
            except OSError as e:
                raise _os_error(f"failed to apply {entry.name!r}", e) from None
        for parts, entry in dirs:
            try:
                self._dir_times(parts, entry)
            except OSError as e:
                raise _os_error(f"failed to set times of {entry.name!r}", e) from None
        return size

    def _member(
        self,
        entry: Entry,
        parts: list[str],
        stream: TarStream,
        unpacked: set[tuple[str, ...]],
        dirs: list[tuple[list[str], Entry]],
    ) -> None:
        base = parts[-1]
        parent = self._parent(tuple(parts[:-1]))
        if base.startswith(WHITEOUT_PREFIX):
            if base == WHITEOUT_OPAQUE:
                self._invalidate()
                self._whiteouts.opaque(parent, unpacked)
                return
            original = base[len(WHITEOUT_PREFIX) :]
            if original in ("", ".", ".."):
                raise errdefs.InvalidArgument(
                    f"invalid archive: invalid whiteout name {entry.name!r}"
                )
            self._invalidate()
            self._whiteouts.whiteout(parent, original, entry)
            return
        if entry.type not in _HANDLED:
            raise errdefs.InvalidArgument(
                f"invalid archive: unhandled tar header type {entry.type!r} for {entry.name!r}"
            )
        st = parent.lstat(base)
        is_dir = entry.type == tarfile.DIRTYPE
        replaced = st is not None and not (stat.S_ISDIR(st.st_mode) and is_dir)
        if replaced and remove_all(parent, base, st):
            self._invalidate()
        self._create(parent, base, entry, stream, st if is_dir else None)
        if is_dir:
            dirs.append((parts, entry))
        unpacked.add((*parent.parts, base))

    # -- parents and the lookup cache ---------------------------------------

    def _parent(self, parts: tuple[str, ...]) -> Dir:
        """The directory ``parts`` names, created (0755) where missing; borrowed from the cache."""
        cached = self._cache.get(parts)
        if cached is not None:
            self._cache.move_to_end(parts)
            return cached
        found = self._root.lookup(parts)
        cur = found.dir
        try:
            if found.rest and cur.lstat(found.rest[0]) is not None:
                raise errdefs.InvalidArgument(
                    f"invalid archive: {'/'.join(parts)}: not a directory"
                )
            for name in found.rest:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=cur.fd)
                nxt = cur.child(name)
                cur.close()
                cur = nxt
                os.fchmod(cur.fd, 0o755)
                self._inherit(cur)
        except BaseException:
            cur.close()
            raise
        if cur.fd == self._root.fd:
            return cur  # the root itself is never cached nor closed
        self._cache[parts] = cur
        if len(self._cache) > _CACHE_SIZE:
            _, old = self._cache.popitem(last=False)
            self._stale.append(old)
        return cur

    def _invalidate(self) -> None:
        # A removed directory or link may change what a cached path means.
        # The Dirs stay open until the next member: one may be in use now.
        self._stale.extend(self._cache.values())
        self._cache.clear()

    def _close_stale(self) -> None:
        for d in self._stale:
            d.close()
        self._stale.clear()

    def _inherit(self, new: Dir) -> None:
        """Give a just-created parent the attributes it has in the nearest lower layer."""
        for lower in self._lowers:
            found = lower.lookup(new.parts)
            try:
                if found.rest:
                    if found.dir.lstat(found.rest[0]) is not None:
                        return  # replaced by a non-directory below: keep 0755
                    continue
                st = os.fstat(found.dir.fd)
                os.fchown(new.fd, st.st_uid, st.st_gid)
                os.fchmod(new.fd, stat.S_IMODE(st.st_mode))
                os.utime(new.fd, ns=(st.st_atime_ns, st.st_mtime_ns))
                _copy_xattrs(found.dir.fd, new.fd)
                return
            finally:
                found.dir.close()
        log.debug("parent directory %r not found below: default permissions (0755)", new.parts)

    # -- creating one member ------------------------------------------------

    def _create(
        self,
        parent: Dir,
        name: str,
        entry: Entry,
        stream: TarStream,
        existing: os.stat_result | None,
    ) -> None:
        perm = entry.mode & 0o7777
        if entry.type in _REGULAR:
            fd = os.open(
                name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=parent.fd,
            )
            try:
                self._write_data(fd, entry, stream)
                self._set_attrs_fd(fd, entry, perm, regular_or_dir=True)
            finally:
                os.close(fd)
        elif entry.type == tarfile.DIRTYPE:
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(name, 0o700, dir_fd=parent.fd)
            sub = parent.child(name)
            try:
                self._set_attrs_fd(sub.fd, entry, perm, regular_or_dir=True)
            finally:
                sub.close()
        elif entry.type == tarfile.SYMTYPE:
            os.symlink(entry.linkname, name, dir_fd=parent.fd)
            self._set_attrs_at(parent, name, entry, perm)
        elif entry.type == tarfile.LNKTYPE:
            self._hardlink(parent, name, entry)
            self._set_attrs_at(parent, name, entry, perm)
        else:
            device = os.makedev(entry.devmajor, entry.devminor)
            os.mknod(name, perm | _DEVICES[entry.type], device, dir_fd=parent.fd)
            self._set_attrs_at(parent, name, entry, perm)

    def _write_data(self, fd: int, entry: Entry, stream: TarStream) -> None:
        if entry.sparse:
            src = open_member(stream, entry)
            while chunk := src.read(1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            return
        if entry.size:
            stream.copy_to(fd, entry.size)

    def _hardlink(self, parent: Dir, name: str, entry: Entry) -> None:
        # containerd's hardlinkRootPath: the target's directory is resolved
        # under the root, its last name is not followed (a link to a symlink
        # links the symlink).
        head, _, last = entry.linkname.rpartition("/")
        if last in ("", ".", ".."):
            raise errdefs.InvalidArgument(
                f"invalid archive: {entry.name!r}: invalid hardlink target {entry.linkname!r}"
            )
        found = self._root.lookup(clean_parts(head))
        try:
            if found.rest or found.dir.lstat(last) is None:
                raise errdefs.InvalidArgument(
                    f"invalid archive: {entry.name!r}: hardlink target "
                    f"{entry.linkname!r} not found in the layer's root"
                )
            try:
                os.link(
                    last,
                    name,
                    src_dir_fd=found.dir.fd,
                    dst_dir_fd=parent.fd,
                    follow_symlinks=False,
                )
            except PermissionError:
                raise errdefs.InvalidArgument(
                    f"invalid archive: {entry.name!r}: cannot hardlink to "
                    f"{entry.linkname!r} (a directory?)"
                ) from None
        finally:
            found.dir.close()

    # -- attributes -----------------------------------------------------------

    def _set_attrs_fd(self, fd: int, entry: Entry, perm: int, *, regular_or_dir: bool) -> None:
        # Order as containerd: owner first (chown clears setuid), then
        # xattrs, mode and times.
        os.fchown(fd, entry.uid, entry.gid)
        for key, value in entry.xattrs.items():
            _set_xattr(fd, key, value, entry, regular_or_dir=regular_or_dir)
        os.fchmod(fd, perm)
        os.utime(fd, ns=(entry.atime_ns, entry.mtime_ns))

    def _set_attrs_at(self, parent: Dir, name: str, entry: Entry, perm: int) -> None:
        """Attributes of a non-regular entry, by name, never following it."""
        os.chown(name, entry.uid, entry.gid, dir_fd=parent.fd, follow_symlinks=False)
        st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        regular_or_dir = stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)
        for key, value in entry.xattrs.items():
            _set_xattr(parent.proc_path(name), key, value, entry, regular_or_dir=regular_or_dir)
        if not stat.S_ISLNK(st.st_mode):
            # There is no lchmod on Linux: chmod the inode an O_PATH
            # descriptor holds, after checking it is not a link (the
            # CVE-2021-32760 class: chmod must never follow a symlink).
            pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent.fd)
            try:
                if not stat.S_ISLNK(os.fstat(pfd).st_mode):
                    os.chmod(f"/proc/self/fd/{pfd}", perm)
            finally:
                os.close(pfd)
        os.utime(
            name,
            ns=(entry.atime_ns, entry.mtime_ns),
            dir_fd=parent.fd,
            follow_symlinks=False,
        )

    def _dir_times(self, parts: list[str], entry: Entry) -> None:
        # containerd resolves the name again (links included) once all
        # members are in, so later members do not move directory times.
        found = self._root.lookup(parts)
        try:
            times = (entry.atime_ns, entry.mtime_ns)
            if not found.rest:
                os.utime(found.dir.fd, ns=times)
            elif len(found.rest) == 1:
                os.utime(found.rest[0], ns=times, dir_fd=found.dir.fd, follow_symlinks=False)
            else:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
        finally:
            found.dir.close()


def _set_xattr(
    target: int | str, key: str, value: bytes, entry: Entry, *, regular_or_dir: bool
) -> None:
    if key.startswith("trusted."):
        # containerd refuses admin attributes from archives (ENOTSUP) and
        # ignores ENOTSUP with a warning.
        log.warning("ignored xattr %s on %r: admin attributes not supported", key, entry.name)
        return
    try:
        if isinstance(target, int):
            os.setxattr(target, key, value)
        else:
            os.setxattr(target, key, value, follow_symlinks=False)
    except OSError as e:
        if e.errno == errno.EPERM and key.startswith("user.") and not regular_or_dir:
            # user.* only exists on regular files and directories.
            log.warning("ignored xattr %s on %r: %s", key, entry.name, e.strerror)
            return
        if e.errno == errno.EOPNOTSUPP:
            log.warning("ignored xattr %s on %r: %s", key, entry.name, e.strerror)
            return
        raise _os_error(f"failed to setxattr {entry.name!r} for key {key!r}", e) from None


def _copy_xattrs(src: int, dst: int) -> None:
    try:
        keys = os.listxattr(src)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.ENODATA):
            return
        raise
    for key in keys:
        if key.startswith("trusted."):
            continue
        try:
            value = os.getxattr(src, key)
            os.setxattr(dst, key, value, os.XATTR_CREATE)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.ENODATA, errno.EEXIST):
                raise
