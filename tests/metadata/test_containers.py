"""The Containers service over gRPC."""

from __future__ import annotations

from google.protobuf import any_pb2, field_mask_pb2

from api import errdefs
from api.containerd.services.containers.v1 import containers_pb2 as api
from api.typeurl import OCI_SPEC_URL
from tests.metadata.server import MetaServer, md, raises


def spec(text: bytes = b'{"ociVersion":"1.0.2"}') -> any_pb2.Any:
    return any_pb2.Any(type_url=OCI_SPEC_URL, value=text)


def container(cid: str, **kw: object) -> api.Container:
    c = api.Container(
        id=cid,
        runtime=api.Container.Runtime(name="io.containerd.runc.v2"),
        spec=spec(),
        **kw,  # type: ignore[arg-type]
    )
    return c


async def test_lifecycle(ms: MetaServer) -> None:
    s = ms.stubs.containers
    c = container(
        "c1", image="docker.io/x:1", snapshotter="native", snapshot_key="c1", labels={"a": "1"}
    )
    c.extensions["ext"].CopyFrom(any_pb2.Any(type_url="x/y", value=b"z"))
    c.runtime.options.CopyFrom(any_pb2.Any(type_url="opts", value=b"o"))
    created = (await s.Create(api.CreateContainerRequest(container=c), metadata=md("n"))).container
    assert created.spec == spec() and created.runtime.options.value == b"o"
    assert created.extensions["ext"].value == b"z"
    got = (await s.Get(api.GetContainerRequest(id="c1"), metadata=md("n"))).container
    assert got == created

    upd = container("c1", labels={"b": "2"}, image="other")
    upd.spec.value = b"{}"
    res = (
        await s.Update(
            api.UpdateContainerRequest(
                container=upd, update_mask=field_mask_pb2.FieldMask(paths=["labels.b", "spec"])
            ),
            metadata=md("n"),
        )
    ).container
    assert dict(res.labels) == {"a": "1", "b": "2"}
    assert res.spec.value == b"{}" and res.image == "docker.io/x:1"
    assert res.created_at == created.created_at

    listed = await s.List(api.ListContainersRequest(filters=["labels.b==2"]), metadata=md("n"))
    assert [x.id for x in listed.containers] == ["c1"]
    streamed = [
        m.container.id async for m in s.ListStream(api.ListContainersRequest(), metadata=md("n"))
    ]
    assert streamed == ["c1"]
    await s.Delete(api.DeleteContainerRequest(id="c1"), metadata=md("n"))
    with raises(errdefs.NotFound, match='container "c1" in namespace "n"'):
        await s.Get(api.GetContainerRequest(id="c1"), metadata=md("n"))


async def test_validation(ms: MetaServer) -> None:
    s = ms.stubs.containers
    with raises(errdefs.InvalidArgument, match="container.ID"):
        await s.Create(api.CreateContainerRequest(container=container("bad id")), metadata=md("n"))
    no_spec = container("c")
    no_spec.ClearField("spec")
    with raises(errdefs.InvalidArgument, match="container.Spec must be set"):
        await s.Create(api.CreateContainerRequest(container=no_spec), metadata=md("n"))
    no_rt = container("c")
    no_rt.runtime.name = ""
    with raises(errdefs.InvalidArgument, match="container.Runtime.Name must be set"):
        await s.Create(api.CreateContainerRequest(container=no_rt), metadata=md("n"))
    with raises(errdefs.InvalidArgument, match="Snapshotter must be set"):
        await s.Create(
            api.CreateContainerRequest(container=container("c", snapshot_key="k")), metadata=md("n")
        )
    await s.Create(
        api.CreateContainerRequest(container=container("c", snapshotter="native")), metadata=md("n")
    )
    with raises(errdefs.AlreadyExists):
        await s.Create(api.CreateContainerRequest(container=container("c")), metadata=md("n"))
    with raises(errdefs.InvalidArgument, match="Snapshotter field is immutable"):
        await s.Update(api.UpdateContainerRequest(container=container("c")), metadata=md("n"))
    with raises(errdefs.InvalidArgument, match='cannot update "runtime" field on "c"'):
        await s.Update(
            api.UpdateContainerRequest(
                container=container("c"), update_mask=field_mask_pb2.FieldMask(paths=["runtime"])
            ),
            metadata=md("n"),
        )
    with raises(errdefs.InvalidArgument, match="Container.ID required"):
        await s.Update(api.UpdateContainerRequest(container=container("")), metadata=md("n"))


async def test_namespaces_are_isolated(ms: MetaServer) -> None:
    s = ms.stubs.containers
    await s.Create(api.CreateContainerRequest(container=container("c")), metadata=md("one"))
    assert list((await s.List(api.ListContainersRequest(), metadata=md("two"))).containers) == []
    with raises(errdefs.NotFound):
        await s.Update(api.UpdateContainerRequest(container=container("c")), metadata=md("two"))
    with raises(errdefs.NotFound):
        await s.Delete(api.DeleteContainerRequest(id="c"), metadata=md("two"))
    await s.Get(api.GetContainerRequest(id="c"), metadata=md("one"))
