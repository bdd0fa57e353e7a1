"""The Leases service over gRPC."""

from __future__ import annotations

from api import errdefs
from api.containerd.services.leases.v1 import leases_pb2 as api
from tests.metadata.server import MetaServer, md, raises

DIGEST = "sha256:" + "3" * 64


async def test_lifecycle_and_resources(ms: MetaServer) -> None:
    s = ms.stubs.leases
    created = (
        await s.Create(
            api.CreateRequest(id="l1", labels={"containerd.io/gc.expire": "2100-01-01T00:00:00Z"}),
            metadata=md("n"),
        )
    ).lease
    assert created.id == "l1" and created.created_at.seconds > 0
    random = (await s.Create(api.CreateRequest(), metadata=md("n"))).lease
    assert random.id
    with raises(errdefs.AlreadyExists, match='lease "l1"'):
        await s.Create(api.CreateRequest(id="l1"), metadata=md("n"))

    for r in (
        api.Resource(id="k2", type="snapshots/native"),
        api.Resource(id="ref1", type="ingests"),
        api.Resource(id=DIGEST, type="content"),
    ):
        await s.AddResource(api.AddResourceRequest(id="l1", resource=r), metadata=md("n"))
    res = await s.ListResources(api.ListResourcesRequest(id="l1"), metadata=md("n"))
    assert [(r.type, r.id) for r in res.resources] == [
        ("content", DIGEST),
        ("ingests", "ref1"),
        ("snapshots/native", "k2"),
    ]
    await s.DeleteResource(
        api.DeleteResourceRequest(id="l1", resource=api.Resource(id="ref1", type="ingests")),
        metadata=md("n"),
    )
    res = await s.ListResources(api.ListResourcesRequest(id="l1"), metadata=md("n"))
    assert len(res.resources) == 2

    listed = await s.List(api.ListRequest(filters=["id==l1"]), metadata=md("n"))
    assert [x.id for x in listed.leases] == ["l1"]
    await s.Delete(api.DeleteRequest(id="l1", sync=True), metadata=md("n"))
    with raises(errdefs.NotFound, match='lease "l1"'):
        await s.ListResources(api.ListResourcesRequest(id="l1"), metadata=md("n"))
    with raises(errdefs.NotFound):
        await s.Delete(api.DeleteRequest(id="l1"), metadata=md("n"))


async def test_resource_validation(ms: MetaServer) -> None:
    s = ms.stubs.leases
    await s.Create(api.CreateRequest(id="l"), metadata=md("n"))

    async def add(rtype: str, rid: str) -> None:
        await s.AddResource(
            api.AddResourceRequest(id="l", resource=api.Resource(id=rid, type=rtype)),
            metadata=md("n"),
        )

    with raises(errdefs.InvalidArgument, match="invalid content resource id"):
        await add("content", "nope")
    with raises(errdefs.InvalidArgument, match="invalid snapshot resource type snapshots"):
        await add("snapshots", "k")
    with raises(errdefs.InvalidArgument, match="invalid resource type content/x"):
        await add("content/x", DIGEST)
    with raises(errdefs.NotImplemented, match="resource type images not supported yet"):
        await add("images", "x")
    with raises(errdefs.NotFound, match='lease "other"'):
        await s.AddResource(
            api.AddResourceRequest(id="other", resource=api.Resource(id=DIGEST, type="content")),
            metadata=md("n"),
        )


async def test_namespaces_are_isolated(ms: MetaServer) -> None:
    s = ms.stubs.leases
    await s.Create(api.CreateRequest(id="l"), metadata=md("one"))
    assert list((await s.List(api.ListRequest(), metadata=md("two"))).leases) == []
    with raises(errdefs.NotFound):
        await s.Delete(api.DeleteRequest(id="l"), metadata=md("two"))
    with raises(errdefs.NotFound):
        await s.AddResource(
            api.AddResourceRequest(id="l", resource=api.Resource(id=DIGEST, type="content")),
            metadata=md("two"),
        )
    assert [x.id for x in (await s.List(api.ListRequest(), metadata=md("one"))).leases] == ["l"]
