"""Hostile layers: one case per escape class; nothing outside the target may change.

Every case builds a layer that tries to reach ``outside`` (a sibling of the
target holding a canary file) and is applied through:

- ``archive``: our extractor in-process, on the target directory itself;
- ``ours`` / ``ours-overlay``: berthd-diff over its socket, onto a bind mount /
  straight into an overlay upper directory;
- ``containerd`` / ``containerd-overlay``: containerd's own differ, the same way.

Each case is either refused with an error, or - where containerd does so -
applied harmlessly: names and links are resolved as if the target were "/",
so what the layer aimed at ``outside`` lands inside the target.  After every
case the canary (content, mode, owner, mtime) and everything else under
``outside`` are exactly as before.  ``test_same_outcome_as_containerd`` checks
that our outcome (refused or the resulting tree) is containerd's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from api import errdefs
from services.diff.differ import Mount
from tests.diff import layers as L
from tests.diff.conftest import Env, bind
from tests.diff.test_archive import apply as apply_in_process
from tests.support import need_root, short_tmpdir

pytestmark = pytest.mark.root

CANARY = b"canary: must never change"
UP = "../" * 40  # more than enough to climb from any target to "/"


@dataclass
class Case:
    id: str
    entries: Callable[[str], list[L.E]]  # given the absolute path of ``outside``
    refused: bool
    # For applied cases: a path (with {out} for outside without its leading
    # "/") that must exist inside the target afterwards.
    lands: str = ""
    # A harmless layer applied first, leaving links in the target for the case.
    before: Callable[[str], list[L.E]] | None = None


def rel(out: str) -> str:
    return out.lstrip("/")


CASES = [
    Case(
        "dotdot-name",
        lambda out: [L.file(UP + rel(out) + "/canary", b"pwned")],
        refused=False,
        lands="{out}/canary",
    ),
    Case(
        "absolute-name",
        lambda out: [L.file(out + "/canary", b"pwned")],
        refused=False,
        lands="{out}/canary",
    ),
    Case(
        "symlinked-parent-absolute",
        lambda out: [L.symlink("evil", out), L.file("evil/canary", b"pwned", mode=0o777)],
        refused=False,
        lands="{out}/canary",
    ),
    Case(
        "symlinked-parent-relative",
        lambda out: [L.symlink("evil", UP + rel(out)), L.file("evil/new", b"pwned")],
        refused=False,
        lands="{out}/new",
    ),
    Case(
        "symlink-chain",
        lambda out: [
            L.symlink("a", "b"),
            L.dir("d"),
            L.symlink("b", "d/c"),
            L.symlink("d/c", "../" + UP + rel(out)),
            L.file("a/new", b"pwned"),
        ],
        refused=False,
        lands="{out}/new",
    ),
    Case(
        "symlink-to-dotdot-in-subdir",
        lambda out: [
            L.dir("d"),
            L.symlink("d/up", "../../../../../../../.."),
            L.file("d/up/" + rel(out) + "/new", b"pwned"),
        ],
        refused=False,
        lands="{out}/new",
    ),
    Case(
        "symlink-to-file-as-parent",
        lambda out: [L.symlink("f", out + "/canary"), L.file("f/inner", b"pwned")],
        refused=False,
        lands="{out}/canary/inner",
    ),
    Case(
        "symlink-loop",
        lambda out: [L.symlink("a", "b"), L.symlink("b", "a"), L.file("a/x", b"")],
        refused=True,
    ),
    Case(
        "symlink-chain-too-long",
        lambda out: (
            [L.symlink(f"l{i}", f"l{i + 1}") for i in range(300)]
            + [L.symlink("l300", out), L.file("l0/new", b"pwned")]
        ),
        refused=True,
    ),
    Case(
        "hardlink-absolute-outside",
        lambda out: [L.hardlink("h", out + "/canary")],
        refused=True,
    ),
    Case(
        "hardlink-dotdot-outside",
        lambda out: [L.hardlink("h", UP + rel(out) + "/canary")],
        refused=True,
    ),
    Case(
        "hardlink-through-symlinked-parent",
        lambda out: [L.symlink("evil", out), L.hardlink("h", "evil/canary")],
        refused=True,
    ),
    Case(
        "hardlink-to-parent-directory",
        lambda out: [L.hardlink("h", "..")],
        refused=True,
    ),
    Case(
        "hardlink-to-escaping-symlink-then-chmod",
        lambda out: [
            L.symlink("s", out + "/canary"),
            L.hardlink("h", "s", mode=0o6777, uid=0, gid=0, mtime=0),
        ],
        refused=False,
        lands="h",
    ),
    Case(
        "chmod-chown-utime-through-symlink",  # the CVE-2021-32760 class
        lambda out: [
            L.E(
                "s",
                L.tarfile.SYMTYPE,
                link=out + "/canary",
                mode=0o6777,
                uid=0,
                gid=0,
                mtime=0,
            )
        ],
        refused=False,
        lands="s",
    ),
    Case(
        "xattr-through-symlink",
        lambda out: [
            L.symlink(
                "s",
                out + "/canary",
                xattrs={"user.pwned": b"1", "security.pwned": b"1", "trusted.pwned": b"1"},
            )
        ],
        refused=False,
        lands="s",
    ),
    Case(
        "directory-over-symlink",
        lambda out: [L.symlink("d", out), L.dir("d", mode=0o777, uid=0)],
        refused=False,
        lands="d",
    ),
    Case(
        "file-over-symlink",
        lambda out: [L.symlink("f", out + "/canary"), L.file("f", b"pwned", mode=0o777)],
        refused=False,
        lands="f",
    ),
    Case("whiteout-dotdot-name", lambda out: [L.file(".wh..", b"")], refused=True),
    Case("whiteout-dotdot-in-subdir", lambda out: [L.file("d/.wh...", b"")], refused=True),
    Case(
        "whiteout-through-symlinked-parent",
        lambda out: [L.symlink("evil", out), L.whiteout("evil/canary")],
        refused=False,
        lands="{out}",
    ),
    Case(
        "whiteout-dotdot-path",
        lambda out: [L.whiteout(UP + rel(out) + "/canary")],
        refused=False,
        lands="{out}",
    ),
    Case(
        "opaque-through-symlinked-parent",
        lambda out: [L.symlink("evil", out), L.opaque("evil")],
        refused=False,
        lands="{out}",
    ),
    Case(
        "opaque-through-symlink-to-root",
        lambda out: [L.file("kept", b"k"), L.symlink("up", "/"), L.opaque("up")],
        refused=False,
        lands="kept",
    ),
    Case(
        "device-nodes-and-setuid",
        lambda out: [
            L.block("disk", 8, 0),
            L.char("mem", 1, 1),
            L.file("suid-root", b"#!/bin/sh\n", mode=0o4755),
        ],
        refused=False,
        lands="disk",
    ),
    Case(
        "pre-existing-symlinked-parent",
        lambda out: [L.file("etc/passwd", b"pwned", mode=0o4777)],
        refused=False,
        lands="{out}/passwd",
        before=lambda out: [L.symlink("etc", out)],
    ),
    Case(
        "pre-existing-symlink-as-hardlink-parent",
        lambda out: [L.hardlink("h", "etc/canary")],
        refused=True,
        before=lambda out: [L.symlink("etc", out)],
    ),
    Case(
        "pre-existing-symlink-chmod-by-directory-entry",
        lambda out: [L.dir("sub", mode=0o777, uid=0, gid=0)],
        refused=False,
        lands="sub",
        before=lambda out: [L.symlink("sub", out + "/sub")],
    ),
]


# -- the outside world ---------------------------------------------------------


def make_outside(base: Path) -> Path:
    out = base / "outside"
    (out / "sub").mkdir(parents=True)
    canary = out / "canary"
    canary.write_bytes(CANARY)
    os.chown(canary, 1234, 1234)
    os.chmod(canary, 0o640)
    os.utime(canary, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    (out / "sub" / "other").write_bytes(b"other")
    os.chmod(out, 0o750)
    os.utime(out, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    return out


def outside_state(out: Path) -> dict[str, L.Node]:
    state = L.tree(out)
    st = out.stat()
    state["."] = L.Node(
        "dir", st.st_mode & 0o7777, st.st_uid, st.st_gid, 0, "", "", (0, 0), (), st.st_mtime_ns, ()
    )
    return state


# -- the targets -----------------------------------------------------------------


@dataclass
class Target:
    root: Path  # where results land (the bind source or the overlay upper)
    mounts: list[Mount]


def bind_target(base: Path) -> Target:
    root = base / "root"
    root.mkdir()
    return Target(root, bind(root))


def overlay_target(base: Path) -> Target:
    upper, lower, work = base / "upper", base / "lower", base / "work"
    for d in (upper, lower, work):
        d.mkdir()
    (lower / "from-lower").write_bytes(b"lower")
    options = (f"workdir={work}", f"upperdir={upper}", f"lowerdir={lower}")
    return Target(upper, [Mount("overlay", "overlay", options)])


async def run_case(
    env: Env | None, backend: str, case: Case, base: Path
) -> tuple[Exception | None, Path]:
    out = make_outside(base)
    before = outside_state(out)
    target = overlay_target(base) if backend.endswith("overlay") else bind_target(base)

    async def apply(tar: bytes) -> None:
        if backend == "archive":
            apply_in_process(target.root, tar)
        else:
            assert env is not None
            desc = await env.put_layer(tar, "gzip")
            differ = env.ours if backend.startswith("ours") else env.theirs
            await differ.apply(desc, target.mounts)

    if case.before is not None:
        await apply(L.layer(case.before(str(out))))
    error: Exception | None = None
    try:
        await apply(L.layer(case.entries(str(out))))
    except errdefs.ErrdefsError as e:
        error = e
    after = outside_state(out)
    assert L.diff_trees(before, after) == [], f"{backend}: {case.id} changed the outside"
    assert (out / "canary").read_bytes() == CANARY
    return error, target.root


def check(case: Case, backend: str, error: Exception | None, base: Path, root: Path) -> None:
    if case.refused:
        assert error is not None, f"{case.id} was applied by {backend}"
        if not backend.startswith("containerd"):
            # Ours says why, as an invalid archive (not an internal error).
            assert isinstance(error, errdefs.InvalidArgument), repr(error)
    else:
        assert error is None, f"{case.id} refused by {backend}: {error}"
        landed = case.lands.format(out=rel(str(base / "outside")))
        assert os.path.lexists(root / landed), f"{landed} missing in {sorted(L.tree(root))}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_hostile_layer_in_process(case: Case) -> None:
    need_root()
    with short_tmpdir("bdh") as base:
        os.chmod(base, 0o755)
        error, root = await run_case(None, "archive", case, base)
        check(case, "archive", error, base, root)


@pytest.mark.containerd
@pytest.mark.parametrize("backend", ["ours", "ours-overlay", "containerd", "containerd-overlay"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_hostile_layer(env: Env, backend: str, case: Case) -> None:
    with short_tmpdir("bdh") as base:
        os.chmod(base, 0o755)
        error, root = await run_case(env, backend, case, base)
        check(case, backend, error, base, root)


@pytest.mark.containerd
@pytest.mark.parametrize("overlay", [False, True], ids=["bind", "overlay"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_same_outcome_as_containerd(env: Env, case: Case, overlay: bool) -> None:
    suffix = "-overlay" if overlay else ""
    results = {}
    with short_tmpdir("bdh") as ours_base, short_tmpdir("bdh") as theirs_base:
        for base in (ours_base, theirs_base):
            os.chmod(base, 0o755)
        ours_error, ours_root = await run_case(env, "ours" + suffix, case, ours_base)
        theirs_error, theirs_root = await run_case(env, "containerd" + suffix, case, theirs_base)
        assert (ours_error is None) == (theirs_error is None), (ours_error, theirs_error)
        if ours_error is None:
            # The trees match once the differing temp paths are renamed alike.
            for name, base, root in (
                ("ours", ours_base, ours_root),
                ("theirs", theirs_base, theirs_root),
            ):
                results[name] = _normalised(L.tree(root, dir_mtimes=False), rel(str(base)))
            assert L.diff_trees(results["ours"], results["theirs"]) == []


def _normalised(t: dict[str, L.Node], base_rel: str) -> dict[str, L.Node]:
    out = {}
    for path, node in t.items():
        path = path.replace(base_rel, "BASE")
        link = node.link.replace("/" + base_rel, "/BASE").replace(base_rel, "BASE")
        # Directories made implicitly and overlay whiteouts get the current time.
        whiteout = node.kind == "char" and node.rdev == (0, 0)
        mtime = None if node.kind == "dir" or whiteout else node.mtime_ns
        out[path] = L.Node(
            node.kind,
            node.mode,
            node.uid,
            node.gid,
            node.size if node.kind != "symlink" else 0,
            node.content,
            link,
            node.rdev,
            node.xattrs,
            mtime,
            node.links,
        )
    return out
