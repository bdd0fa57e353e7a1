"""The differ mounts only what lies under its allowed roots.

In process: ``MountGuard`` on real directories and symlinks.  As a process:
berthd-diff started with narrow ``--allowed-root``s refuses a caller's host
paths (a bind of /etc to diff into a layer, a directory to apply into, an
overlay whose upper, work or a lower directory is elsewhere, a symlink or
``..`` leading out) with PermissionDenied naming the path, and keeps working
on what it serves, overlays of many layers included.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from api import errdefs
from services.diff.allowed import PROC_FD, MountGuard, pinned_fds
from services.diff.differ import Mount
from services.diff.proxy import ProxyDiffer
from services.harness.server import CHANNEL_OPTIONS
from tests.diff import layers as L
from tests.diff.conftest import Env, bind
from tests.support import PYTHON, Proc, need_root, short_tmpdir, wait_for_socket
from tests.support.containerd import Containerd, ctr_bytes

# -- in process -----------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """<tmp>/served/{a,b}, <tmp>/outside, and symlinks in served/ leading out."""
    served = tmp_path / "served"
    for d in (served / "a", served / "b", tmp_path / "outside"):
        d.mkdir(parents=True)
    (served / "a" / "mine").write_text("a")
    (tmp_path / "outside" / "secret").write_text("s")
    (served / "out-link").symlink_to(tmp_path / "outside")
    (served / "in-link").symlink_to(served / "b")
    return tmp_path


async def test_paths_under_a_root_are_pinned(tree: Path) -> None:
    guard = MountGuard([str(tree / "served")])
    mounts = [
        Mount("bind", str(tree / "served" / "a"), ("rbind", "ro")),
        Mount("bind", str(tree / "served" / "in-link"), ("rbind",)),
        Mount("bind", str(tree / "served" / "a" / ".." / "b"), ("rbind",)),
    ]
    async with guard.pinned(mounts) as safe:
        assert [m.options for m in safe] == [m.options for m in mounts]
        fds = []
        for m in safe:
            assert m.source.startswith(PROC_FD) and m.source.endswith("/.")
            fds.append(int(m.source[len(PROC_FD) :].split("/")[0]))
        real = [os.readlink(f"{PROC_FD}{fd}") for fd in fds]
        assert real == [str(tree / "served" / x) for x in ("a", "b", "b")]
    for fd in fds:  # closed once the block ends
        with pytest.raises(OSError):
            os.fstat(fd)


async def test_what_was_checked_is_what_is_used(tree: Path) -> None:
    """Swapping a checked directory for a symlink leading out changes nothing."""
    guard = MountGuard([str(tree / "served")])
    a = tree / "served" / "a"
    async with guard.pinned([Mount("bind", str(a), ("rbind",))]) as safe:
        a.rename(tree / "served" / "a-moved")
        a.symlink_to(tree / "outside")
        assert os.listdir(safe[0].source) == ["mine"]


@pytest.mark.parametrize(
    "source",
    ["outside", "served/out-link", "served/../outside", "served/a/../../outside", "/etc", ""],
)
async def test_paths_leading_out_are_refused(tree: Path, source: str) -> None:
    guard = MountGuard([str(tree / "served")])
    path = str(tree / source) if source and not source.startswith("/") else source
    with pytest.raises(errdefs.PermissionDenied, match=r"mount source .* is outside the roots"):
        async with guard.pinned([Mount("bind", path, ("rbind",))]):
            pass
    # so are relative paths and the labels other mount types carry as source
    for odd in ("served/a", "tmpfs", "overlay"):
        with pytest.raises(errdefs.PermissionDenied, match=f"'{odd}'"):
            async with guard.pinned([Mount("tmpfs", odd, ())]):
                pass


@pytest.mark.parametrize("option", ["lowerdir", "upperdir", "workdir"])
async def test_every_overlay_directory_is_checked(tree: Path, option: str) -> None:
    guard = MountGuard([str(tree / "served")])
    dirs = {
        "lowerdir": f"{tree}/served/a:{tree}/served/b",
        "upperdir": f"{tree}/served/b",
        "workdir": f"{tree}/served/a",
    }
    good = (*(f"{k}={v}" for k, v in dirs.items()), "index=off")
    async with guard.pinned([Mount("overlay", "overlay", good)]) as safe:
        opts = dict(o.split("=", 1) for o in safe[0].options)
        assert opts["index"] == "off"
        assert all(p.startswith(PROC_FD) for k in dirs for p in opts[k].split(":"))
        assert len(pinned_fds(safe[0].options)) == 4
    # one directory elsewhere (the last lower, say) and the mount is refused
    dirs[option] = dirs[option].rsplit(":", 1)[0] + ":" if option == "lowerdir" else ""
    dirs[option] += f"{tree}/served/out-link"
    bad = tuple(f"{k}={v}" for k, v in dirs.items())
    with pytest.raises(errdefs.PermissionDenied, match=f"overlay {option} '.*out-link'"):
        async with guard.pinned([Mount("overlay", "overlay", bad)]):
            pass


async def test_several_roots_and_a_root_behind_a_symlink(tree: Path) -> None:
    (tree / "alias").symlink_to(tree / "served" / "b")
    guard = MountGuard([str(tree / "alias"), str(tree / "outside")])
    ok = [
        Mount("bind", str(tree / "served" / "b"), ()),
        Mount("bind", str(tree / "outside" / "secret"), ()),
    ]
    async with guard.pinned(ok) as safe:
        assert not safe[1].source.endswith("/.")  # a file stays a file
        assert Path(safe[1].source).read_text() == "s"
    with pytest.raises(errdefs.PermissionDenied):
        async with guard.pinned([Mount("bind", str(tree / "served" / "a"), ())]):
            pass


async def test_a_missing_path_under_a_root_is_invalid(tree: Path) -> None:
    guard = MountGuard([str(tree / "served")])
    with pytest.raises(errdefs.InvalidArgument, match="No such file or directory"):
        async with guard.pinned([Mount("bind", str(tree / "served" / "gone"), ())]):
            pass


# -- berthd-diff as a process ------------------------------------------------------


@dataclass
class Served:
    differ: ProxyDiffer
    roots: tuple[Path, Path]
    outside: Path


@pytest.fixture(scope="module")
def narrow_plugin(containerd: Containerd) -> Iterator[tuple[str, Path]]:
    with short_tmpdir("bdn") as d:
        os.chmod(d, 0o755)
        address = str(d / "diff.sock")
        proc = Proc(
            [
                PYTHON, "-m", "services.diff.main", "--address", address,
                "--content-address", containerd.address, "--root", str(d / "root"),
                "--allowed-root", str(d / "snaps"), "--allowed-root", str(d / "more"),
            ],
            d / "plugin.log",
        )  # fmt: skip
        try:
            wait_for_socket(address, proc=proc.popen)
            yield address, d
        finally:
            assert proc.stop() == 0, proc.output()


@pytest.fixture
async def served(env: Env, narrow_plugin: tuple[str, Path]) -> AsyncIterator[Served]:
    address, d = narrow_plugin
    with short_tmpdir("bdo") as outside:
        os.chmod(outside, 0o755)
        (outside / "secret").write_bytes(b"host data\n")
        roots = (d / "snaps", d / "more")
        for r in roots:
            r.mkdir(exist_ok=True)
        async with grpc.aio.insecure_channel("unix://" + address, options=CHANNEL_OPTIONS) as ch:
            yield Served(ProxyDiffer(ch, metadata=env.metadata), roots, outside)


def _fresh(parent: Path, name: str) -> Path:
    path = parent / f"{name}-{os.urandom(4).hex()}"
    path.mkdir()
    return path


@pytest.mark.containerd
async def test_apply_and_diff_within_the_roots(env: Env, served: Served) -> None:
    need_root()
    snaps, more = served.roots
    desc = await env.put_layer(L.layer([L.file("hello", b"hi\n")]), "gzip")
    target = _fresh(snaps, "bind")
    await served.differ.apply(desc, bind(target))
    assert (target / "hello").read_bytes() == b"hi\n"
    # an overlay straight into its upper directory, its lower in the other root
    upper, work, lower = _fresh(snaps, "upper"), _fresh(snaps, "work"), _fresh(more, "lower")
    (lower / "below").write_bytes(b"lower\n")
    overlay = Mount(
        "overlay", "overlay", (f"workdir={work}", f"upperdir={upper}", f"lowerdir={lower}")
    )
    await served.differ.apply(desc, [overlay])
    assert (upper / "hello").read_bytes() == b"hi\n"
    diffed = await served.differ.compare(bind(lower), [overlay], L.MEDIA_TYPES["none"])
    names = sorted(m.name for m in _members(env, diffed.digest))
    assert names == ["hello"]


@pytest.mark.containerd
async def test_overlay_of_many_lowers(env: Env, served: Served) -> None:
    """Enough lower directories that the options are compacted and mounted by
    a child process, which must inherit the pinned descriptors."""
    need_root()
    snaps, _ = served.roots
    base = _fresh(snaps, "many")
    lowers = []
    for i in range(220):
        lower = base / f"{i}"
        lower.mkdir()
        (lower / f"f{i}").write_bytes(b"x")
        lowers.append(str(lower))
    top = Mount("overlay", "overlay", ("lowerdir=" + ":".join(reversed(lowers)),))
    diffed = await served.differ.compare([], [top], L.MEDIA_TYPES["none"])
    assert len(list(_members(env, diffed.digest))) == 220


@pytest.mark.containerd
async def test_host_paths_are_refused(env: Env, served: Served) -> None:
    need_root()
    snaps, _ = served.roots
    desc = await env.put_layer(L.layer([L.file("planted", b"x")]), "gzip")
    outside = served.outside
    link = snaps / f"link-{os.urandom(4).hex()}"
    link.symlink_to(outside)
    attempts = [
        bind(outside),
        bind(link),
        bind(snaps / ".." / outside.name),
        [Mount("overlay", "overlay", (f"workdir={outside}", f"upperdir={outside}",
                                      f"lowerdir={_fresh(snaps, 'l')}"))],
    ]  # fmt: skip
    for mounts in attempts:
        with pytest.raises(errdefs.PermissionDenied, match="is outside the roots"):
            await served.differ.apply(desc, mounts)
    assert sorted(os.listdir(outside)) == ["secret"]
    # reading the host into a layer: refused too, naming the path
    with pytest.raises(errdefs.PermissionDenied, match=r"mount source '/etc'"):
        await served.differ.compare([], bind("/etc"))
    with pytest.raises(errdefs.PermissionDenied, match=r"overlay lowerdir '/etc'"):
        await served.differ.compare([], [Mount("overlay", "overlay", ("lowerdir=/etc",))])


def _members(env: Env, digest: str) -> Iterator[tarfile.TarInfo]:
    data = ctr_bytes(env.containerd.address, "content", "get", digest, namespace=_ns(env))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        yield from tar.getmembers()


def _ns(env: Env) -> str:
    return dict(env.metadata)["containerd-namespace"]
