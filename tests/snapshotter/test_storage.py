"""The SQLite snapshot metadata store (containerd's storage/bolt.go behaviour)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from api import errdefs
from services.snapshotter.snapshotter import Info, Kind, Usage
from services.snapshotter.storage import MetaStore


@pytest.fixture
def ms(tmp_path: Path) -> Iterator[MetaStore]:
    store = MetaStore(tmp_path / "metadata.sqlite")
    yield store
    store.close()


def _chain(ms: MetaStore, *names: str) -> list[str]:
    """Committed snapshots names[0] <- names[1] <- ...; returns their ids."""
    ids = []
    parent = ""
    with ms.transaction(writable=True) as tx:
        for name in names:
            s = tx.create_snapshot(Kind.ACTIVE, name + "-a", parent)
            ids.append(tx.commit_active(name + "-a", name, Usage(10, 1)))
            assert ids[-1] == s.id
            parent = name
    return ids


def test_create_and_parent_chain_nearest_first(ms: MetaStore) -> None:
    ids = _chain(ms, "c1", "c2", "c3")
    with ms.transaction(writable=True) as tx:
        active = tx.create_snapshot(Kind.ACTIVE, "a", "c3", {"x": "1"})
        view = tx.create_snapshot(Kind.VIEW, "v", "c1")
        root_view = tx.create_snapshot(Kind.VIEW, "v0")
    assert active.parent_ids == (ids[2], ids[1], ids[0])
    assert view.parent_ids == (ids[0],)
    assert root_view.parent_ids == ()
    with ms.transaction() as tx:
        assert tx.get_snapshot("a") == active
        sid, info, usage = tx.get_info("a")
    assert sid == active.id
    assert (info.name, info.kind, info.parent, dict(info.labels)) == (
        "a",
        Kind.ACTIVE,
        "c3",
        {"x": "1"},
    )
    assert info.created == info.updated
    assert usage == Usage()


def test_committed_usage_and_labels_replaced(ms: MetaStore) -> None:
    with ms.transaction(writable=True) as tx:
        tx.create_snapshot(Kind.ACTIVE, "a", "", {"old": "1"})
        tx.commit_active("a", "c", Usage(size=4096, inodes=3), {"new": "2", "empty": ""})
    with ms.transaction() as tx:
        _, info, usage = tx.get_info("c")
        with pytest.raises(errdefs.NotFound):
            tx.get_info("a")
    assert usage == Usage(size=4096, inodes=3)
    assert dict(info.labels) == {"new": "2"}
    assert info.kind == Kind.COMMITTED


def test_ids_never_reused_after_remove(ms: MetaStore) -> None:
    with ms.transaction(writable=True) as tx:
        first = tx.create_snapshot(Kind.ACTIVE, "a").id
        tx.remove("a")
        second = tx.create_snapshot(Kind.ACTIVE, "b").id
    assert int(second) > int(first)


def test_rolled_back_transaction_leaves_nothing(ms: MetaStore) -> None:
    with pytest.raises(RuntimeError), ms.transaction(writable=True) as tx:
        tx.create_snapshot(Kind.ACTIVE, "a", "", {"l": "v"})
        raise RuntimeError("crash before commit")
    with ms.transaction() as tx:
        assert tx.id_map() == {}
        with pytest.raises(errdefs.NotFound):
            tx.get_info("a")


def test_commit_errors_in_containerd_order(ms: MetaStore) -> None:
    _chain(ms, "c")
    with ms.transaction(writable=True) as tx:
        tx.create_snapshot(Kind.VIEW, "v", "c")
        tx.create_snapshot(Kind.ACTIVE, "a")
    with ms.transaction(writable=True) as tx:
        # The name is checked before the key exists.
        with pytest.raises(errdefs.AlreadyExists, match="committed snapshot c"):
            tx.commit_active("missing", "c", Usage())
        with pytest.raises(errdefs.NotFound):
            tx.commit_active("missing", "new", Usage())
        with pytest.raises(errdefs.FailedPrecondition, match="is not active"):
            tx.commit_active("v", "new", Usage())
        with pytest.raises(errdefs.FailedPrecondition):
            tx.commit_active("c", "new", Usage())


def test_create_errors(ms: MetaStore) -> None:
    _chain(ms, "c")
    with ms.transaction(writable=True) as tx:
        tx.create_snapshot(Kind.ACTIVE, "a", "c")
        with pytest.raises(errdefs.AlreadyExists):
            tx.create_snapshot(Kind.VIEW, "a", "c")
        with pytest.raises(errdefs.NotFound, match='missing parent "nope"'):
            tx.create_snapshot(Kind.ACTIVE, "b", "nope")
        with pytest.raises(errdefs.InvalidArgument, match="not committed"):
            tx.create_snapshot(Kind.ACTIVE, "b", "a")
        with pytest.raises(errdefs.InvalidArgument):
            tx.create_snapshot(Kind.COMMITTED, "b")


def test_remove_refuses_parent_with_children(ms: MetaStore) -> None:
    _chain(ms, "c1", "c2")
    with ms.transaction(writable=True) as tx:
        with pytest.raises(errdefs.FailedPrecondition, match="with child"):
            tx.remove("c1")
        with pytest.raises(errdefs.NotFound):
            tx.remove("nope")
        assert tx.remove("c2")[1] == Kind.COMMITTED
        tx.remove("c1")
        assert tx.id_map() == {}


def test_get_snapshot_refuses_committed(ms: MetaStore) -> None:
    _chain(ms, "c")
    with ms.transaction() as tx, pytest.raises(errdefs.FailedPrecondition):
        tx.get_snapshot("c")


def test_update_field_paths(ms: MetaStore) -> None:
    with ms.transaction(writable=True) as tx:
        tx.create_snapshot(Kind.ACTIVE, "a", "", {"a": "1", "b": "2"})
    with ms.transaction(writable=True) as tx:
        info = tx.update_info(Info(name="a", labels={"b": "3", "c": "4"}), ["labels.b", "labels.a"])
    assert dict(info.labels) == {"b": "3"}
    assert info.updated > info.created
    with ms.transaction(writable=True) as tx:
        info = tx.update_info(Info(name="a", labels={"z": "9"}))
        assert dict(info.labels) == {"z": "9"}
        with pytest.raises(errdefs.InvalidArgument, match='cannot update "kind"'):
            tx.update_info(Info(name="a"), ["kind"])
        with pytest.raises(errdefs.NotFound):
            tx.update_info(Info(name="nope"))


def test_walk_filters_and_order(ms: MetaStore) -> None:
    _chain(ms, "p")
    with ms.transaction(writable=True) as tx:
        tx.create_snapshot(Kind.ACTIVE, "b", "p", {"l": "2"})
        tx.create_snapshot(Kind.VIEW, "a", "p")
    with ms.transaction() as tx:
        assert [i.name for i in tx.walk_info()] == ["a", "b", "p"]
        assert [i.name for i in tx.walk_info("kind==view")] == ["a"]
        assert [i.name for i in tx.walk_info("labels.l==2", "name==p")] == ["b", "p"]
        assert [i.name for i in tx.walk_info('parent==""')] == ["p"]
        with pytest.raises(errdefs.InvalidArgument):
            tx.walk_info("kind==")
        assert tx.counts_by_kind() == {Kind.ACTIVE: 1, Kind.VIEW: 1, Kind.COMMITTED: 1}


def test_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    ms = MetaStore(path)
    _chain(ms, "c1", "c2")
    ms.close()
    ms.close()  # twice is harmless
    reopened = MetaStore(path)
    with reopened.transaction() as tx:
        assert sorted(tx.id_map().values()) == ["c1", "c2"]
        assert tx.get_info("c2")[1].parent == "c1"
    reopened.close()


def test_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    ms = MetaStore(path)
    with pytest.raises(errdefs.FailedPrecondition, match="newer"), ms.transaction():
        pass


def test_read_transaction_cannot_write(ms: MetaStore) -> None:
    with ms.transaction() as tx, pytest.raises(errdefs.FailedPrecondition):
        tx.create_snapshot(Kind.ACTIVE, "a")


def test_empty_key_and_name_are_refused(ms: MetaStore) -> None:
    with ms.transaction(writable=True) as tx:
        for kind in (Kind.ACTIVE, Kind.VIEW):
            with pytest.raises(errdefs.InvalidArgument, match="key must not be empty"):
                tx.create_snapshot(kind, "")
        tx.create_snapshot(Kind.ACTIVE, "a")
        with pytest.raises(errdefs.InvalidArgument, match="name must not be empty"):
            tx.commit_active("a", "", Usage())
    with ms.transaction() as tx:
        assert [i.name for i in tx.walk_info()] == ["a"]
        assert tx.get_info("a")[1].kind == Kind.ACTIVE


def test_children_are_counted_by_parent_exactly(ms: MetaStore) -> None:
    _chain(ms, "c1")
    with ms.transaction(writable=True) as tx:
        tx.create_snapshot(Kind.ACTIVE, "root-a")
        tx.create_snapshot(Kind.VIEW, "root-v")
        tx.create_snapshot(Kind.ACTIVE, "child", "c1")
    with ms.transaction(writable=True) as tx:
        # other parentless snapshots are not children of a parentless one
        tx.remove("root-a")
        with pytest.raises(errdefs.FailedPrecondition, match="child"):
            tx.remove("c1")
        tx.remove("child")
        tx.remove("c1")
        tx.remove("root-v")
