"""Kinds, parents, stat, update, walk, remove, usage: the snapshot lifecycle.

Ported from containerd v1.6 snapshots/testsuite/testsuite.go (Basic,
StatActive, StatCommitted, Transitivity, PrepareView, Update, Remove, Walk,
RemoveIntermediateSnapshot, StatInWalk, CloseTwice) plus checks of labels,
usage, Mounts and List batching.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api import errdefs
from services.snapshotter.snapshotter import Info, Kind
from tests.snapshotter import fstree
from tests.snapshotter.conformance import Env, scenario

SLACK = timedelta(milliseconds=5)


def _now() -> datetime:
    return datetime.now(UTC)


@scenario
async def basic(env: Env) -> None:
    env.need_mounts()
    initial = fstree.apply(
        fstree.create_file("/foo", b"foo\n", 0o777),
        fstree.create_dir("/a", 0o755),
        fstree.create_dir("/a/b", 0o755),
        fstree.create_dir("/a/b/c", 0o755),
    )
    diff = fstree.apply(
        fstree.create_file("/bar", b"bar\n", 0o777),
        fstree.create_file("/foo", b"bar\n", 0o777),
        fstree.remove_all("/a/b"),
    )
    preparing, committed = env.key("preparing"), env.key("committed")
    where = env.mount(await env.sn.prepare(preparing, "", env.opt), "preparing")
    initial(where)
    env.unmount(where)
    await env.sn.commit(committed, preparing, env.opt)

    si = await env.sn.stat(committed)
    assert si.parent == ""
    assert si.kind == Kind.COMMITTED
    with pytest.raises(errdefs.NotFound):
        await env.sn.stat(preparing)

    nxt = env.key("nextlayer")
    where = env.mount(await env.sn.prepare(nxt, committed, env.opt), "nextlayer")
    expected = env.dir("expected-initial")
    initial(expected)
    fstree.assert_same_tree(expected, where)
    diff(where)
    env.unmount(where)

    ni = await env.sn.stat(nxt)
    assert ni.parent == committed
    assert ni.kind == Kind.ACTIVE

    next_committed = env.key("committed-next")
    await env.sn.commit(next_committed, nxt, env.opt)
    si2 = await env.sn.stat(next_committed)
    assert si2.parent == committed
    assert si2.kind == Kind.COMMITTED
    with pytest.raises(errdefs.NotFound):
        await env.sn.stat(nxt)

    walked = await env.infos()
    assert walked.get(si.name) == si
    assert walked.get(si2.name) == si2

    view = env.key("nextnextlayer")
    where = env.mount(await env.sn.view(view, next_committed, env.opt), "nextnextlayer")
    diff(expected)
    fstree.assert_same_tree(expected, where)
    env.unmount(where)

    await env.sn.remove(view)
    with pytest.raises(errdefs.FailedPrecondition):
        await env.sn.remove(committed)
    await env.sn.remove(next_committed)
    await env.sn.remove(committed)


async def _prepare_mounted(env: Env, name: str, parent: str = "") -> tuple[str, Path]:
    key = env.key(name)
    mounts = await env.sn.prepare(key, parent, env.opt)
    assert mounts, "expected mounts to have entries"
    if env.target.can_mount:
        return key, env.mount(mounts, name)
    return key, env.dir(name)


@scenario
async def stat_active(env: Env) -> None:
    env.need_mounts()
    key, where = await _prepare_mounted(env, "preparing")
    (where / "foo").write_bytes(b"foo\n")
    si = await env.sn.stat(key)
    assert (si.name, si.kind, si.parent) == (key, Kind.ACTIVE, "")


@scenario
async def stat_committed(env: Env) -> None:
    env.need_mounts()
    key, where = await _prepare_mounted(env, "preparing")
    (where / "foo").write_bytes(b"foo\n")
    committed = env.key("committed")
    await env.sn.commit(committed, key, env.opt)
    si = await env.sn.stat(committed)
    assert (si.name, si.kind, si.parent) == (committed, Kind.COMMITTED, "")


@scenario
async def transitivity(env: Env) -> None:
    key, _ = await _prepare_mounted(env, "preparing")
    snap_a = env.key("snapA")
    await env.sn.commit(snap_a, key, env.opt)
    nxt, _ = await _prepare_mounted(env, "next", snap_a)
    snap_b = env.key("snapB")
    await env.sn.commit(snap_b, nxt, env.opt)
    si_a = await env.sn.stat(snap_a)
    si_b = await env.sn.stat(snap_b)
    si_parent_b = await env.sn.stat(si_b.parent)
    assert si_a.parent == ""
    assert si_b.parent == snap_a
    assert si_parent_b.parent == ""


@scenario
async def prepare_view_same_key(env: Env) -> None:
    key, _ = await _prepare_mounted(env, "preparing")
    snap_a = env.key("snapA")
    await env.sn.commit(snap_a, key, env.opt)

    new_layer = env.key("newlayer")
    await env.sn.prepare(new_layer, snap_a, env.opt)
    with pytest.raises(errdefs.AlreadyExists):
        await env.sn.view(new_layer, snap_a, env.opt)

    prep = env.key("prepLayer")
    await env.sn.prepare(prep, snap_a, env.opt)
    with pytest.raises(errdefs.AlreadyExists):
        await env.sn.prepare(prep, snap_a, env.opt)

    view = env.key("viewLayer")
    await env.sn.view(view, snap_a, env.opt)
    with pytest.raises(errdefs.AlreadyExists):
        await env.sn.view(view, snap_a, env.opt)


async def _base_snapshots(env: Env) -> None:
    """c1 <- c2 <- a1, a2 (no parent), v1 (view of c2), v2 (view, no parent)."""
    k = env.key
    await env.sn.prepare(k("c1-a"), "", env.opt)
    await env.sn.commit(k("c1"), k("c1-a"), env.opt)
    await env.sn.prepare(k("c2-a"), k("c1"), env.opt)
    await env.sn.commit(k("c2"), k("c2-a"), env.opt)
    await env.sn.prepare(k("a1"), k("c2"), env.opt)
    await env.sn.prepare(k("a2"), "", env.opt)
    await env.sn.view(k("v1"), k("c2"), env.opt)
    await env.sn.view(k("v2"), "", env.opt)


@scenario
async def update(env: Env) -> None:
    t1 = _now() - SLACK
    await _base_snapshots(env)
    t2 = _now() + SLACK
    k = env.key
    cases = [
        (k("c1"), Kind.COMMITTED, ""),
        (k("c2"), Kind.COMMITTED, k("c1")),
        (k("a1"), Kind.ACTIVE, k("c2")),
        (k("a2"), Kind.ACTIVE, ""),
        (k("v1"), Kind.VIEW, k("c2")),
        (k("v2"), Kind.VIEW, ""),
    ]
    for name, kind, parent in cases:
        st = await env.sn.stat(name)
        assert t1 <= st.created <= t2, f"{name}: created {st.created} not in [{t1}, {t2}]"
        assert st.created == st.updated, name
        assert (st.kind, st.parent, st.name) == (kind, parent, name)

        created = st.created
        root = env.root_label
        expected = {"l1": "v1", "l2": "v2", "l3": "v3", "containerd.io/gc.root": root}
        u1 = _now() - SLACK
        st = await env.sn.update(
            Info(name=name, kind=st.kind, parent="doesnotexist", labels=expected)
        )
        u2 = _now() + SLACK
        assert st.created == created, name
        assert u1 <= st.updated <= u2, f"{name}: updated {st.updated} not in [{u1}, {u2}]"
        assert (st.kind, st.parent, st.name) == (kind, parent, name)
        assert dict(st.labels) == expected

        st = await env.sn.update(
            Info(name=name, labels={"l1": "updated", "l4": "v4"}), "labels.l1", "labels.l2"
        )
        assert dict(st.labels) == {"l1": "updated", "l3": "v3", "containerd.io/gc.root": root}

        expected = {"l4": "v4", "containerd.io/gc.root": root}
        st = await env.sn.update(Info(name=name, labels=expected), "labels")
        assert dict(st.labels) == expected
        assert dict((await env.sn.stat(name)).labels) == expected

        with pytest.raises(errdefs.InvalidArgument):
            await env.sn.update(Info(name=name, parent="doesnotexist", labels=expected), "parent")


@scenario
async def remove(env: Env) -> None:
    k = env.key
    await env.sn.prepare(k("committed-a"), "", env.opt)
    await env.sn.commit(k("committed-1"), k("committed-a"), env.opt)
    await env.sn.prepare(k("reuse-1"), k("committed-1"), env.opt)
    await env.sn.remove(k("reuse-1"))
    await env.sn.view(k("reuse-1"), k("committed-1"), env.opt)
    await env.sn.remove(k("reuse-1"))
    await env.sn.prepare(k("reuse-1"), "", env.opt)
    await env.sn.remove(k("committed-1"))
    await env.sn.commit(k("committed-1"), k("reuse-1"), env.opt)
    assert (await env.sn.stat(k("committed-1"))).kind == Kind.COMMITTED


@scenario
async def remove_intermediate(env: Env) -> None:
    k = env.key
    await env.sn.prepare(k("base"), "", env.opt)
    await env.sn.commit(k("committed-base"), k("base"), env.opt)
    await env.sn.prepare(k("intermediate"), k("committed-base"), env.opt)
    await env.sn.commit(k("committed-inter"), k("intermediate"), env.opt)
    await env.sn.prepare(k("toplayer"), k("committed-inter"), env.opt)
    with pytest.raises(errdefs.FailedPrecondition):
        await env.sn.remove(k("committed-inter"))
    await env.sn.remove(k("toplayer"))
    await env.sn.remove(k("committed-inter"))
    await env.sn.remove(k("committed-base"))


@scenario
async def walk(env: Env) -> None:
    k = env.key
    mark = env.root_label
    opt = {"containerd.io/gc.root": mark}
    await env.sn.prepare(k("a-np"), "", opt)
    await env.sn.prepare(k("p-tmp"), "", opt)
    await env.sn.commit(k("p"), k("p-tmp"), opt)
    await env.sn.prepare(k("a"), k("p"), opt)
    await env.sn.view(k("v"), k("p"), opt)
    await env.sn.prepare(k("p-wl-tmp"), "", opt)
    await env.sn.commit(k("p-wl"), k("p-wl-tmp"), {"l": "1", **opt})
    await env.sn.prepare(k("a-wl"), k("p-wl"), {"l": "2", **opt})
    await env.sn.view(k("v-wl"), k("p-wl"), {"l": "3", **opt})
    await env.sn.prepare(k("a-np-wl"), "", {"l": "2", **opt})

    mine = f'labels."containerd.io/gc.root"=={mark}'
    cases: list[tuple[list[str], list[str]]] = [
        (["a-np", "p", "a", "v", "p-wl", "a-wl", "v-wl", "a-np-wl"], [mine]),
        (["a-np", "a", "a-wl", "a-np-wl"], [f"kind==active,{mine}"]),
        (["v", "v-wl"], [f"kind==view,{mine}"]),
        (["p", "p-wl"], [f"kind==committed,{mine}"]),
        (["p", "a-np-wl"], [f'name=="{k("p")}"', f'name=="{k("a-np-wl")}"']),
        (["a-wl"], [f'name=="{k("a-wl")}",labels.l']),
        (["a", "v"], [f'parent=="{k("p")}"']),
        (["a", "v", "a-wl", "v-wl"], [f'parent!="",{mine}']),
        (["p-wl", "a-wl", "v-wl", "a-np-wl"], [f"labels.l,{mine}"]),
        (["a-wl", "a-np-wl"], [f"labels.l==2,{mine}"]),
    ]
    for i, (matches, filters) in enumerate(cases):
        got = await env.names(*filters)
        assert got == sorted(k(m) for m in matches), f"case {i} {filters}: {got}"


@scenario
async def stat_in_walk(env: Env) -> None:
    k = env.key
    await env.sn.prepare(k("c1-a"), "", env.opt)
    await env.sn.commit(k("c1"), k("c1-a"), env.opt)
    await env.sn.prepare(k("c2-a"), k("c1"), env.opt)
    await env.sn.commit(k("c2"), k("c2-a"), env.opt)
    await env.sn.prepare(k("a1"), k("c2"), env.opt)
    await env.sn.view(k("v1"), k("c2"), env.opt)
    seen = 0
    async for info in env.sn.walk(f'labels."containerd.io/gc.root"=={env.root_label}'):
        assert await env.sn.stat(info.name) == info
        seen += 1
    assert seen == 4


@scenario
async def close_twice(env: Env) -> None:
    n = env.key("closeTwice")
    await env.sn.prepare(n + "-prepare", "", env.opt)
    await env.sn.commit(n, n + "-prepare", env.opt)
    await env.sn.remove(n)
    await env.sn.close()
    await env.sn.close()


@scenario
async def labels_kept_and_replaced(env: Env) -> None:
    k = env.key
    labels = {"x": "1", "containerd.io/snapshot/custom": "kept", **env.opt}
    await env.sn.prepare(k("a"), "", labels)
    assert dict((await env.sn.stat(k("a"))).labels) == labels
    await env.sn.view(k("v"), "", labels)
    assert dict((await env.sn.stat(k("v"))).labels) == labels
    # Commit replaces labels; the active snapshot's are not inherited.
    await env.sn.commit(k("c"), k("a"), {"y": "2", **env.opt})
    st = await env.sn.stat(k("c"))
    assert dict(st.labels) == {"y": "2", **env.opt}
    # Committed timestamps restart at commit.
    assert st.created == st.updated
    assert st.created >= (await env.sn.stat(k("v"))).created
    # Empty values mean "no label".
    st = await env.sn.update(Info(name=k("c"), labels={"y": ""}), "labels.y")
    assert dict(st.labels) == env.opt


@scenario
async def mounts_match_prepare(env: Env) -> None:
    k = env.key
    prepared = await env.sn.prepare(k("a"), "", env.opt)
    assert await env.sn.mounts(k("a")) == prepared
    await env.sn.commit(k("c"), k("a"), env.opt)
    for key, parent, fn in (
        (k("a2"), k("c"), env.sn.prepare),
        (k("v1"), k("c"), env.sn.view),
        (k("v0"), "", env.sn.view),
    ):
        mounts = await fn(key, parent, env.opt)
        assert await env.sn.mounts(key) == mounts
    await env.sn.prepare(k("c2-a"), k("c"), env.opt)
    await env.sn.commit(k("c2"), k("c2-a"), env.opt)
    mounts = await env.sn.view(k("v2"), k("c2"), env.opt)
    assert await env.sn.mounts(k("v2")) == mounts


@scenario
async def usage(env: Env) -> None:
    env.need_mounts()
    k = env.key
    where = env.mount(await env.sn.prepare(k("a"), "", env.opt), "a")
    empty = await env.sn.usage(k("a"))
    assert empty.inodes >= 1
    data = os.urandom(256 * 1024)
    (where / "blob").write_bytes(data)
    (where / "dir").mkdir()
    (where / "dir" / "small").write_bytes(b"x")
    os.sync()
    grown = await env.sn.usage(k("a"))
    assert grown.inodes == empty.inodes + 3
    assert grown.size >= empty.size + len(data)
    env.unmount(where)
    await env.sn.commit(k("c"), k("a"), env.opt)
    # Recorded at commit: the committed snapshot reports what the layer held.
    assert await env.sn.usage(k("c")) == grown


@scenario
async def list_batches(env: Env) -> None:
    # More than one List message (containerd sends 100 infos per message).
    count = 230
    await env.sn.prepare(env.key("base-a"), "", env.opt)
    await env.sn.commit(env.key("base"), env.key("base-a"), env.opt)
    for i in range(count):
        await env.sn.view(env.key(f"view-{i:03d}"), env.key("base"), env.opt)
    started = time.monotonic()
    names = await env.names(f"kind==view,{_mine(env)}")
    assert names == sorted(env.key(f"view-{i:03d}") for i in range(count))
    assert time.monotonic() - started < 60
    assert await env.names(_mine(env), f"name=={env.key('base')}") == sorted(
        [env.key("base"), *(env.key(f"view-{i:03d}") for i in range(count))]
    )


def _mine(env: Env) -> str:
    return f'labels."containerd.io/gc.root"=={env.root_label}'


@scenario
async def cleanup(env: Env) -> None:
    k = env.key
    await env.sn.prepare(k("a"), "", env.opt)
    await env.sn.commit(k("c"), k("a"), env.opt)
    await env.sn.remove(k("c"))
    if env.target.cleanup:
        await env.sn.cleanup()
        await env.sn.cleanup()
    else:
        with pytest.raises(errdefs.NotImplemented):
            await env.sn.cleanup()
    # Nothing that still exists is affected.
    await env.sn.prepare(k("b"), "", env.opt)
    if env.target.cleanup:
        await env.sn.cleanup()
    assert (await env.sn.stat(k("b"))).kind == Kind.ACTIVE
