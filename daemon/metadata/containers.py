"""Containers: metadata objects that tie a spec, runtime and snapshot together
(containerd's metadata/containers.go)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from api import errdefs, filters
from daemon.metadata import records
from daemon.metadata.db import MetadataDB, ensure_namespace
from daemon.metadata.store import CONTAINERS, Tx
from daemon.metadata.validation import (
    apply_label_paths,
    q,
    validate_identifier,
    validate_labels,
)

# The paths a full replace (no field mask) updates; everything else is immutable.
FULL_REPLACE = ("labels", "spec", "extensions", "image", "snapshotkey")


def validate_container(c: records.Container) -> None:
    validate_identifier(c.id, "container.ID")
    if any(not k for k in c.extensions):
        raise errdefs.InvalidArgument("container.Extension keys must not be zero-length")
    validate_labels(c.labels, "containers.Labels")
    if not c.runtime_name:
        raise errdefs.InvalidArgument("container.Runtime.Name must be set")
    if c.spec is None:
        raise errdefs.InvalidArgument("container.Spec must be set")
    if c.snapshot_key and not c.snapshotter:
        raise errdefs.InvalidArgument(
            "container.Snapshotter must be set if container.SnapshotKey is set"
        )


def _apply(
    current: records.Container, c: records.Container, paths: Sequence[str]
) -> records.Container:
    updated = current
    for path in paths:
        labels = apply_label_paths(updated.labels, c.labels, path)
        if labels is not None:
            updated = dataclasses.replace(updated, labels=labels)
            continue
        if path.startswith("extensions."):
            key = path[len("extensions.") :]
            ext = dict(updated.extensions)
            if key in c.extensions:
                ext[key] = c.extensions[key]
            else:
                # containerd stores the zero Any for a key missing from the request.
                ext[key] = b""
            updated = dataclasses.replace(updated, extensions=ext)
        elif path == "spec":
            updated = dataclasses.replace(updated, spec=c.spec)
        elif path == "extensions":
            updated = dataclasses.replace(updated, extensions=dict(c.extensions))
        elif path == "image":
            updated = dataclasses.replace(updated, image=c.image)
        elif path == "snapshotkey":
            updated = dataclasses.replace(updated, snapshot_key=c.snapshot_key)
        else:
            raise errdefs.InvalidArgument(f"cannot update {q(path)} field on {q(c.id)}")
    return updated


class ContainerStore:
    def __init__(self, db: MetadataDB) -> None:
        self.db = db

    async def get(self, ns: str, cid: str) -> records.Container:
        """Raises NotFound."""
        found = await self.db.get(CONTAINERS, ns, cid)
        if found is None:
            raise errdefs.NotFound(f"container {q(cid)} in namespace {q(ns)}")
        return found

    async def list(self, ns: str, exprs: Sequence[str] = ()) -> list[records.Container]:
        """Raises InvalidArgument for a filter that does not parse."""
        flt = await filters.parse_all_async(*exprs)
        found = await self.db.scan(CONTAINERS, ns)
        if flt is filters.ALWAYS:
            return found
        return await filters.select(
            flt, found, lambda c: filters.adapt_container(c.id, c.image, c.runtime_name, c.labels)
        )

    async def create(self, c: records.Container) -> records.Container:
        """Raises InvalidArgument (validation), AlreadyExists."""
        try:
            validate_container(c)
        except errdefs.InvalidArgument as e:
            raise errdefs.InvalidArgument(
                f"create container failed validation: {e.message}"
            ) from None
        now = records.now_ns()
        created = dataclasses.replace(c, created_at=now, updated_at=now)

        def txn(tx: Tx) -> None:
            if tx.get(CONTAINERS, c.namespace, c.id) is not None:
                raise errdefs.AlreadyExists(f"container {q(c.id)}")
            ensure_namespace(tx, c.namespace)
            tx.put(CONTAINERS, created)

        await self.db.update(txn)
        return created

    async def update(self, c: records.Container, paths: Sequence[str] = ()) -> records.Container:
        """Update by field paths; with none, the mutable fields, refusing to change
        the snapshotter or runtime.

        Raises InvalidArgument (no id, bad path, immutable field, validation), NotFound.
        """
        if not c.id:
            raise errdefs.InvalidArgument("must specify a container id")

        def txn(tx: Tx) -> records.Container:
            current = tx.get(CONTAINERS, c.namespace, c.id)
            if current is None:
                raise errdefs.NotFound(f"container {q(c.id)}")
            selected = list(paths)
            if not selected:
                selected = list(FULL_REPLACE)
                # Immutable fields must match on a full replace, so that they
                # can become mutable later without changing what callers see.
                if current.snapshotter != c.snapshotter:
                    raise errdefs.InvalidArgument("container.Snapshotter field is immutable")
                if current.runtime_name != c.runtime_name:
                    raise errdefs.InvalidArgument("container.Runtime.Name field is immutable")
            updated = _apply(current, c, selected)
            try:
                validate_container(updated)
            except errdefs.InvalidArgument as e:
                raise errdefs.InvalidArgument(f"update failed validation: {e.message}") from None
            updated = dataclasses.replace(
                updated, created_at=current.created_at, updated_at=records.now_ns()
            )
            tx.put(CONTAINERS, updated)
            return updated

        return await self.db.update(txn)

    async def delete(self, ns: str, cid: str) -> None:
        """Raises NotFound."""

        def txn(tx: Tx) -> None:
            if not tx.delete(CONTAINERS, ns, cid):
                raise errdefs.NotFound(f"container {cid}")

        await self.db.update(txn, dirty=True)
