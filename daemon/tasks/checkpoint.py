"""Task checkpoints in the content store, and restoring from them.

As containerd's services/tasks/local.go: a checkpoint is written by the shim
(runc and criu) into a directory; unless the caller named its own image path
in the runc ``CheckpointOptions``, that directory is packed as a tar blob
(``application/vnd.containerd.container.criu.checkpoint.criu.tar``) and the
container's spec as a second blob, both in the caller's namespace and lease,
and their descriptors answered.  Create with a checkpoint descriptor unpacks
the blob into a private directory the shim restores from (or uses the
``criu_image_path`` of the runc ``Options`` as is).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Iterator

from api import errdefs
from api.containerd.types import descriptor_pb2
from api.containerd.types.runc.options import oci_pb2
from daemon.metadata import records
from daemon.metadata.content import NamespacedContent, NamespacedWriter
from services.tasks.runtime import Task
from services.tasks.types import AnyValue

MEDIA_TYPE_CHECKPOINT = "application/vnd.containerd.container.criu.checkpoint.criu.tar"
MEDIA_TYPE_CHECKPOINT_CONFIG = "application/vnd.containerd.container.checkpoint.config.v1+proto"

RUNC_OPTIONS = "containerd.runc.v1.Options"
RUNC_CHECKPOINT_OPTIONS = "containerd.runc.v1.CheckpointOptions"

CHUNK = 1 << 20


def _is_runc(runtime: str) -> bool:
    # containerd's checkRuntime(runtime, "io.containerd.runc"): a name prefix by parts
    return runtime.split(".")[:3] == ["io", "containerd", "runc"]


class Restored:
    """A checkpoint unpacked for one task.  The shim restores from it at Start
    (runc restore), so it stays until the task is deleted."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def remove(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self.path, True)


def _safe_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for m in tar:
        parts = os.path.normpath(m.name).split(os.sep)
        if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()):
            raise errdefs.InvalidArgument(f"checkpoint: refusing entry {m.name!r}")
        yield m


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class Checkpoints:
    """``scratch`` holds checkpoints on their way in and out of the content
    store; it belongs on disk (the daemon's root), not on a tmpfs: a
    checkpoint is as large as the container's memory."""

    def __init__(self, content: NamespacedContent | None, scratch: str) -> None:
        self.content = content
        self.scratch = scratch
        self._restored: dict[tuple[str, str], Restored] = {}

    def _content(self) -> NamespacedContent:
        if self.content is None:
            raise errdefs.FailedPrecondition("checkpoints need a content store; none is loaded")
        return self.content

    def restore_path(self, runtime: str, options: AnyValue | None) -> str:
        """The runc ``Options.criu_image_path`` of a Create's task options, if any."""
        if options is None or not _is_runc(runtime):
            return ""
        if options.type_url.rsplit("/", 1)[-1] != RUNC_OPTIONS:
            raise errdefs.InvalidArgument(f"invalid task create option for {runtime}")
        opts = oci_pb2.Options()
        opts.ParseFromString(options.value)
        return opts.criu_image_path

    def _image_path(self, runtime: str, options: AnyValue | None) -> str:
        if options is None or not _is_runc(runtime):
            return ""
        if options.type_url.rsplit("/", 1)[-1] != RUNC_CHECKPOINT_OPTIONS:
            raise errdefs.InvalidArgument(f"invalid task checkpoint option for {runtime}")
        opts = oci_pb2.CheckpointOptions()
        opts.ParseFromString(options.value)
        return opts.image_path

    async def release(self, ns: str, id_: str) -> None:
        """Remove the checkpoint task ``id_`` of ``ns`` was restored from, if any."""
        restored = self._restored.pop((ns, id_), None)
        if restored is not None:
            await restored.remove()

    async def unpack(self, ns: str, id_: str, desc: descriptor_pb2.Descriptor) -> Restored:
        """Extract the checkpoint blob ``desc`` of ``ns`` into a directory kept for
        task ``id_`` until ``release``."""
        if desc.media_type != MEDIA_TYPE_CHECKPOINT:
            raise errdefs.InvalidArgument(f"unsupported checkpoint type {desc.media_type!r}")
        content = self._content()
        await self.release(ns, id_)
        os.makedirs(self.scratch, mode=0o700, exist_ok=True)
        path = tempfile.mkdtemp(prefix="restore-", dir=self.scratch)
        restored = Restored(path)
        tar_path = path + ".tar"
        try:
            reader = await content.reader(ns, desc.digest)
            try:
                f = await asyncio.to_thread(open, tar_path, "wb")
                try:
                    async for chunk in reader.chunks():
                        await asyncio.to_thread(f.write, chunk)
                finally:
                    f.close()
            finally:
                await reader.close()

            def extract() -> None:
                with tarfile.open(tar_path) as tar:
                    tar.extractall(path, members=_safe_members(tar), filter="tar")

            await asyncio.to_thread(extract)
        except BaseException:
            await restored.remove()
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tar_path)
        self._restored[(ns, id_)] = restored
        return restored

    async def take(
        self,
        ns: str,
        lease: str,
        container: records.Container,
        task: Task,
        options: AnyValue | None,
    ) -> list[descriptor_pb2.Descriptor]:
        """Checkpoint ``task``; unless the options name an image path, store it
        and the container's spec as blobs and answer their descriptors."""
        image = self._image_path(container.runtime_name, options)
        if image:
            await task.checkpoint(image, options)
            return []
        content = self._content()
        os.makedirs(self.scratch, mode=0o700, exist_ok=True)
        work = tempfile.mkdtemp(prefix="checkpoint-", dir=self.scratch)
        try:
            await task.checkpoint(work, options)
            tar_path = work + ".tar"

            def pack() -> None:
                with tarfile.open(tar_path, "w") as tar:
                    for name in sorted(os.listdir(work)):
                        tar.add(os.path.join(work, name), arcname=name)

            await asyncio.to_thread(pack)
            try:
                cp = await self._write(content, ns, lease, MEDIA_TYPE_CHECKPOINT, tar_path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tar_path)
            spec = await self._write_bytes(
                content, ns, lease, MEDIA_TYPE_CHECKPOINT_CONFIG, container.spec or b""
            )
            return [cp, spec]
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _write(
        self, content: NamespacedContent, ns: str, lease: str, media_type: str, path: str
    ) -> descriptor_pb2.Descriptor:
        size = os.path.getsize(path)
        digest = await asyncio.to_thread(_sha256_file, path)
        w = await self._open(content, ns, lease, size, digest)
        if w is not None:
            try:
                f = await asyncio.to_thread(open, path, "rb")
                try:
                    while chunk := await asyncio.to_thread(f.read, CHUNK):
                        await w.write(chunk)
                finally:
                    f.close()
                with contextlib.suppress(errdefs.AlreadyExists):
                    await w.commit(size, digest)
            finally:
                await w.close()
        return descriptor_pb2.Descriptor(media_type=media_type, digest=digest, size=size)

    async def _write_bytes(
        self, content: NamespacedContent, ns: str, lease: str, media_type: str, data: bytes
    ) -> descriptor_pb2.Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        w = await self._open(content, ns, lease, len(data), digest)
        if w is not None:
            try:
                await w.write(data)
                with contextlib.suppress(errdefs.AlreadyExists):
                    await w.commit(len(data), digest)
            finally:
                await w.close()
        return descriptor_pb2.Descriptor(media_type=media_type, digest=digest, size=len(data))

    @staticmethod
    async def _open(
        content: NamespacedContent, ns: str, lease: str, size: int, digest: str
    ) -> NamespacedWriter | None:
        try:
            return await content.writer(ns, f"checkpoint-{uuid.uuid4().hex}", size, digest, lease)
        except errdefs.AlreadyExists:
            return None  # the namespace has it already (now held by the lease)
