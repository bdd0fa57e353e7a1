"""Checkpoint images and specs are stored as blobs of the caller's namespace,
held by the caller's lease (the Tasks service's ``Checkpoints``, without criu)."""

from __future__ import annotations

import hashlib

from api.containerd.services.leases.v1 import leases_pb2
from daemon.tasks.checkpoint import MEDIA_TYPE_CHECKPOINT, Checkpoints
from tests.metadata.server import MetaServer, md


async def test_files_and_bytes_become_leased_blobs(ms: MetaServer) -> None:
    content = ms.services.content
    assert content is not None
    await ms.stubs.leases.Create(leases_pb2.CreateRequest(id="cp"), metadata=md("ns1"))
    cps = Checkpoints(content, str(ms.root / "scratch"))
    path = ms.root / "image.tar"
    data = b"x" * (3 << 20)  # several chunks
    path.write_bytes(data)
    desc = await cps._write(content, "ns1", "cp", MEDIA_TYPE_CHECKPOINT, str(path))
    assert desc.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert desc.size == len(data)
    assert (await content.info("ns1", desc.digest)).size == len(data)
    spec = await cps._write_bytes(content, "ns1", "cp", "spec/type", b"{}")
    assert (await content.info("ns1", spec.digest)).size == 2
    # Already there: held again, not written again.
    again = await cps._write_bytes(content, "ns1", "cp", "spec/type", b"{}")
    assert again == spec
    resources = await ms.stubs.leases.ListResources(
        leases_pb2.ListResourcesRequest(id="cp"), metadata=md("ns1")
    )
    assert {r.id for r in resources.resources} == {desc.digest, spec.digest}
