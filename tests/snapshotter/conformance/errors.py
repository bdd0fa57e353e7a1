"""The error class for every misuse: the class is part of the contract.

Callers branch on it (an unpacker treats AlreadyExists from Prepare as "layer
already there"), so each misuse must answer exactly what containerd answers.
"""

from __future__ import annotations

import pytest

from api import errdefs
from services.snapshotter.snapshotter import Info, Kind
from tests.snapshotter.conformance import Env, scenario


async def _chain(env: Env) -> None:
    """committed c1 <- c2, active a (on c2), view v (on c2)."""
    k = env.key
    await env.sn.prepare(k("c1-a"), "", env.opt)
    await env.sn.commit(k("c1"), k("c1-a"), env.opt)
    await env.sn.prepare(k("c2-a"), k("c1"), env.opt)
    await env.sn.commit(k("c2"), k("c2-a"), env.opt)
    await env.sn.prepare(k("a"), k("c2"), env.opt)
    await env.sn.view(k("v"), k("c2"), env.opt)


@scenario
async def errors_not_found(env: Env) -> None:
    await _chain(env)
    missing = env.key("missing")
    for call in (
        env.sn.stat(missing),
        env.sn.usage(missing),
        env.sn.mounts(missing),
        env.sn.remove(missing),
        env.sn.commit(env.key("new"), missing, env.opt),
        env.sn.update(Info(name=missing, labels={"a": "b"})),
        env.sn.prepare(env.key("p"), missing, env.opt),
        env.sn.view(env.key("q"), missing, env.opt),
    ):
        with pytest.raises(errdefs.NotFound):
            await call
    # A failed call leaves nothing behind.
    assert await env.names(f"name=={env.key('p')}", f"name=={env.key('q')}") == []


@scenario
async def errors_already_exists(env: Env) -> None:
    await _chain(env)
    k = env.key
    for key in (k("a"), k("v"), k("c1")):
        with pytest.raises(errdefs.AlreadyExists):
            await env.sn.prepare(key, "", env.opt)
        with pytest.raises(errdefs.AlreadyExists):
            await env.sn.view(key, k("c2"), env.opt)
    await env.sn.prepare(k("b"), k("c2"), env.opt)
    for name in (k("c1"), k("a"), k("v")):
        with pytest.raises(errdefs.AlreadyExists):
            await env.sn.commit(name, k("b"), env.opt)
    # The active snapshot survived the failed commits.
    assert (await env.sn.stat(k("b"))).parent == k("c2")


@scenario
async def errors_failed_precondition(env: Env) -> None:
    await _chain(env)
    k = env.key
    # Committing anything but an active snapshot.
    await env.sn.view(k("v0"), "", env.opt)
    with pytest.raises(errdefs.FailedPrecondition):
        await env.sn.commit(k("from-view"), k("v0"), env.opt)
    expected: type[errdefs.ErrdefsError] = errdefs.FailedPrecondition
    if "native-commit-view-unknown" in env.target.quirks:
        expected = errdefs.Unknown
    with pytest.raises(expected):
        await env.sn.commit(k("from-view"), k("v"), env.opt)
    with pytest.raises(errdefs.FailedPrecondition):
        await env.sn.commit(k("from-committed"), k("c2"), env.opt)
    # Committed snapshots have no mounts.
    with pytest.raises(errdefs.FailedPrecondition):
        await env.sn.mounts(k("c1"))
    # Removing a parent.
    with pytest.raises(errdefs.FailedPrecondition):
        await env.sn.remove(k("c1"))
    with pytest.raises(errdefs.FailedPrecondition):
        await env.sn.remove(k("c2"))
    # Nothing changed.
    assert await env.names(f"name=={k('from-view')}", f"name=={k('from-committed')}") == []
    assert (await env.sn.stat(k("v"))).parent == k("c2")


@scenario
async def errors_invalid_argument(env: Env) -> None:
    await _chain(env)
    k = env.key
    # Only committed snapshots can be parents.
    with pytest.raises(errdefs.InvalidArgument):
        await env.sn.prepare(k("on-active"), k("a"), env.opt)
    with pytest.raises(errdefs.InvalidArgument):
        await env.sn.view(k("on-view"), k("v"), env.opt)
    # Immutable fields.
    for path in ("parent", "name", "kind", "created_at"):
        with pytest.raises(errdefs.InvalidArgument):
            await env.sn.update(Info(name=k("c1"), parent="x"), path)
    # Labels over 4096 bytes (key plus value).
    huge = {"big": "x" * 4096}
    with pytest.raises(errdefs.InvalidArgument):
        await env.sn.prepare(k("huge"), "", huge)
    with pytest.raises(errdefs.InvalidArgument):
        await env.sn.update(Info(name=k("c1"), labels=huge), "labels.big")
    await env.sn.prepare(k("b"), k("c2"), env.opt)
    with pytest.raises(errdefs.InvalidArgument):
        await env.sn.commit(k("huge-c"), k("b"), {**env.opt, **huge})
    # A label exactly at the limit is fine.
    ok = {"big": "x" * (4096 - 3)}
    await env.sn.update(Info(name=k("c1"), labels=ok), "labels.big")
    assert (await env.sn.stat(k("c1"))).labels["big"] == ok["big"]


@scenario
async def errors_bad_filter(env: Env) -> None:
    await _chain(env)
    # containerd's List hands the parse error to gRPC unconverted, so a real
    # containerd answers Unknown; we answer InvalidArgument.  Either way the
    # call fails and nothing is listed.
    with pytest.raises((errdefs.InvalidArgument, errdefs.Unknown)):
        await env.names("name==")
    with pytest.raises((errdefs.InvalidArgument, errdefs.Unknown)):
        await env.names('labels."unterminated==x')


@scenario
async def errors_empty_key(env: Env) -> None:
    """An empty key or name is refused before anything exists under it; a
    parentless snapshot is nobody's child, so removing one is never refused
    for children it does not have."""
    k = env.key
    expected: type[errdefs.ErrdefsError] = errdefs.InvalidArgument
    if "empty-key-unknown" in env.target.quirks:
        expected = errdefs.Unknown
    with pytest.raises(expected):
        await env.sn.prepare("", "", env.opt)
    with pytest.raises(expected):
        await env.sn.view("", "", env.opt)
    await env.sn.prepare(k("c-a"), "", env.opt)
    await env.sn.commit(k("c"), k("c-a"), env.opt)
    await env.sn.prepare(k("a"), "", env.opt)
    await env.sn.view(k("v"), "", env.opt)
    with pytest.raises(expected):
        await env.sn.prepare("", k("c"), env.opt)
    with pytest.raises(expected):
        await env.sn.commit("", k("a"), env.opt)
    # Nothing is named "" and the active snapshot is still there.
    with pytest.raises(errdefs.NotFound):
        await env.sn.stat("")
    with pytest.raises(errdefs.NotFound):
        await env.sn.remove("")
    assert (await env.sn.stat(k("a"))).kind == Kind.ACTIVE
    # Parentless snapshots of every kind go, one by one.
    for key in (k("a"), k("v"), k("c")):
        await env.sn.remove(key)
    assert await env.names(f"name~={env.prefix}") == []
