"""The Namespaces service over gRPC, with containerd's rules and messages."""

from __future__ import annotations

import pytest
from google.protobuf import field_mask_pb2

from api import errdefs, errgrpc
from api.containerd.services.images.v1 import images_pb2
from api.containerd.services.leases.v1 import leases_pb2
from api.containerd.services.namespaces.v1 import namespace_pb2 as api
from api.containerd.types import descriptor_pb2
from tests.metadata.server import MetaServer, md

DIGEST = "sha256:" + "1" * 64


async def test_create_get_list_label_delete(ms: MetaServer) -> None:
    s = ms.stubs.namespaces
    await s.Create(
        api.CreateNamespaceRequest(namespace=api.Namespace(name="one", labels={"a": "1"})),
        metadata=md("default"),
    )
    got = await s.Get(api.GetNamespaceRequest(name="one"))
    assert dict(got.namespace.labels) == {"a": "1"}
    await s.Update(
        api.UpdateNamespaceRequest(
            namespace=api.Namespace(name="one", labels={"b": "2"}),
            update_mask=field_mask_pb2.FieldMask(paths=["labels.b"]),
        )
    )
    await s.Update(
        api.UpdateNamespaceRequest(
            namespace=api.Namespace(name="one"),
            update_mask=field_mask_pb2.FieldMask(paths=["labels.a"]),
        )
    )
    got = await s.Get(api.GetNamespaceRequest(name="one"))
    assert dict(got.namespace.labels) == {"b": "2"}
    # No mask: the labels are replaced.
    await s.Update(
        api.UpdateNamespaceRequest(namespace=api.Namespace(name="one", labels={"c": "3"}))
    )
    listed = await s.List(api.ListNamespacesRequest())
    assert [(n.name, dict(n.labels)) for n in listed.namespaces] == [("one", {"c": "3"})]
    await s.Delete(api.DeleteNamespaceRequest(name="one"))
    assert (await s.List(api.ListNamespacesRequest())).namespaces == []


async def test_errors(ms: MetaServer) -> None:
    s = ms.stubs.namespaces
    await s.Create(api.CreateNamespaceRequest(namespace=api.Namespace(name="dup")))
    with pytest.raises(errdefs.AlreadyExists, match='namespace "dup"'), errgrpc.translate():
        await s.Create(api.CreateNamespaceRequest(namespace=api.Namespace(name="dup")))
    with pytest.raises(errdefs.InvalidArgument, match="must match"), errgrpc.translate():
        await s.Create(api.CreateNamespaceRequest(namespace=api.Namespace(name="no/slash")))
    with pytest.raises(errdefs.InvalidArgument, match="maximum size"), errgrpc.translate():
        await s.Create(
            api.CreateNamespaceRequest(
                namespace=api.Namespace(name="big", labels={"k": "v" * 5000})
            )
        )
    with pytest.raises(errdefs.NotFound, match='namespace "nope"'), errgrpc.translate():
        await s.Delete(api.DeleteNamespaceRequest(name="nope"))
    with pytest.raises(errdefs.InvalidArgument, match='cannot update "name"'), errgrpc.translate():
        await s.Update(
            api.UpdateNamespaceRequest(
                namespace=api.Namespace(name="dup"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            )
        )


async def test_delete_refuses_a_namespace_with_objects(ms: MetaServer) -> None:
    img = images_pb2.Image(
        name="x",
        target=descriptor_pb2.Descriptor(media_type="application/json", digest=DIGEST, size=1),
    )
    await ms.stubs.images.Create(images_pb2.CreateImageRequest(image=img), metadata=md("busy"))
    with pytest.raises(errdefs.FailedPrecondition) as exc, errgrpc.translate():
        await ms.stubs.namespaces.Delete(api.DeleteNamespaceRequest(name="busy"))
    assert exc.value.message == 'namespace "busy" must be empty, but it still has images'
    await ms.stubs.images.Delete(images_pb2.DeleteImageRequest(name="x"), metadata=md("busy"))
    # Leases alone do not keep a namespace.
    await ms.stubs.leases.Create(leases_pb2.CreateRequest(id="l"), metadata=md("busy"))
    await ms.stubs.namespaces.Delete(api.DeleteNamespaceRequest(name="busy"))
    listed = await ms.stubs.leases.List(leases_pb2.ListRequest(), metadata=md("busy"))
    assert list(listed.leases) == []


async def test_objects_create_their_namespace(ms: MetaServer) -> None:
    await ms.stubs.leases.Create(leases_pb2.CreateRequest(id="l"), metadata=md("implicit"))
    names = [
        n.name for n in (await ms.stubs.namespaces.List(api.ListNamespacesRequest())).namespaces
    ]
    assert names == ["implicit"]


async def test_get_of_an_unknown_namespace_answers_it_empty(ms: MetaServer) -> None:
    # containerd 1.6 answers Get for any name (metadata/namespaces.go Labels).
    got = await ms.stubs.namespaces.Get(api.GetNamespaceRequest(name="ghost"))
    assert got.namespace.name == "ghost"
    assert dict(got.namespace.labels) == {}
