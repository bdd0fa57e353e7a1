"""Images: named references to a target descriptor (containerd's metadata/images.go)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from api import errdefs, filters
from daemon.metadata import records
from daemon.metadata.db import MetadataDB, ensure_namespace
from daemon.metadata.store import IMAGES, Tx
from daemon.metadata.validation import apply_label_paths, q, validate_digest, validate_labels


def validate_image(image: records.Image) -> None:
    if not image.name:
        raise errdefs.InvalidArgument("image name must not be empty")
    validate_labels(image.labels, "image.Labels")
    target = image.target
    try:
        validate_digest(target.digest)
    except errdefs.InvalidArgument as e:
        raise errdefs.InvalidArgument(
            f"Target.Digest {q(target.digest)} invalid: {e.message}"
        ) from None
    if target.size <= 0:
        raise errdefs.InvalidArgument("Target.Size must be greater than zero")
    if not target.media_type:
        raise errdefs.InvalidArgument("Target.MediaType must be set")


def _apply(current: records.Image, image: records.Image, paths: Sequence[str]) -> records.Image:
    if not paths:
        return dataclasses.replace(image, created_at=current.created_at)
    updated = current
    for path in paths:
        labels = apply_label_paths(updated.labels, image.labels, path)
        if labels is not None:
            updated = dataclasses.replace(updated, labels=labels)
            continue
        annotations = apply_label_paths(
            updated.target.annotations, image.target.annotations, path, "annotations"
        )
        if annotations is not None:
            target = dataclasses.replace(updated.target, annotations=annotations)
            updated = dataclasses.replace(updated, target=target)
            continue
        if path == "target":
            # The target is replaced as a unit: digest, size and media type
            # only make sense together.
            updated = dataclasses.replace(updated, target=image.target)
            continue
        raise errdefs.InvalidArgument(f"cannot update {q(path)} field on image {q(image.name)}")
    return updated


def _adapt(img: records.Image) -> filters.Adaptor:
    t = img.target
    return filters.adapt_image(img.name, t.digest, t.media_type, img.labels, t.annotations)


class ImageStore:
    def __init__(self, db: MetadataDB) -> None:
        self.db = db

    async def get(self, ns: str, name: str) -> records.Image:
        """Raises NotFound."""
        image = await self.db.get(IMAGES, ns, name)
        if image is None:
            raise errdefs.NotFound(f"image {q(name)}")
        return image

    async def list(self, ns: str, exprs: Sequence[str] = ()) -> list[records.Image]:
        """Raises InvalidArgument for a filter that does not parse."""
        flt = await filters.parse_all_async(*exprs)
        found = await self.db.scan(IMAGES, ns)
        if flt is filters.ALWAYS:
            return found
        return await filters.select(flt, found, _adapt)

    async def create(self, image: records.Image) -> records.Image:
        """Raises InvalidArgument (validation), AlreadyExists."""
        validate_image(image)
        now = records.now_ns()
        created = dataclasses.replace(image, created_at=now, updated_at=now)

        def txn(tx: Tx) -> None:
            if tx.get(IMAGES, image.namespace, image.name) is not None:
                raise errdefs.AlreadyExists(f"image {q(image.name)}")
            ensure_namespace(tx, image.namespace)
            tx.put(IMAGES, created)

        await self.db.update(txn)
        return created

    async def update(self, image: records.Image, paths: Sequence[str] = ()) -> records.Image:
        """Update by field paths (labels[.k], annotations[.k], target); all when none.

        Raises InvalidArgument (no name, another path, validation), NotFound.
        """
        if not image.name:
            raise errdefs.InvalidArgument("image name is required for update")

        def txn(tx: Tx) -> records.Image:
            current = tx.get(IMAGES, image.namespace, image.name)
            if current is None:
                raise errdefs.NotFound(f"image {q(image.name)}")
            updated = _apply(current, image, paths)
            validate_image(updated)
            updated = dataclasses.replace(
                updated, created_at=current.created_at, updated_at=records.now_ns()
            )
            tx.put(IMAGES, updated)
            return updated

        return await self.db.update(txn)

    async def delete(self, ns: str, name: str, target: str = "") -> None:
        """Raises NotFound, also when ``target`` is set and is not the image's target digest."""

        def txn(tx: Tx) -> None:
            current = tx.get(IMAGES, ns, name)
            if current is None:
                raise errdefs.NotFound(f"image {q(name)}")
            if target and current.target.digest != target:
                # containerd 2.x's check of DeleteImageRequest.target.
                raise errdefs.NotFound(
                    f"image {q(name)} has target {current.target.digest}, not {target}"
                )
            tx.delete(IMAGES, ns, name)

        await self.db.update(txn, dirty=True)
