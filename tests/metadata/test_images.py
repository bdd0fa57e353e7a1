"""The Images service over gRPC."""

from __future__ import annotations

from google.protobuf import field_mask_pb2

from api import errdefs
from api.containerd.services.images.v1 import images_pb2 as api
from api.containerd.types import descriptor_pb2
from tests.metadata.server import MetaServer, md, raises

DIGEST = "sha256:" + "1" * 64
OTHER = "sha256:" + "2" * 64
MT = "application/vnd.oci.image.manifest.v1+json"


def image(name: str, digest: str = DIGEST, labels: dict[str, str] | None = None) -> api.Image:
    return api.Image(
        name=name,
        labels=labels or {},
        target=descriptor_pb2.Descriptor(media_type=MT, digest=digest, size=10),
    )


async def test_create_get_list_update_delete(ms: MetaServer) -> None:
    s = ms.stubs.images
    created = await s.Create(
        api.CreateImageRequest(image=image("a:1", labels={"x": "1"})), metadata=md("n")
    )
    assert created.image.created_at == created.image.updated_at
    assert created.image.created_at.seconds > 0
    await s.Create(api.CreateImageRequest(image=image("b:1", OTHER)), metadata=md("n"))
    got = await s.Get(api.GetImageRequest(name="a:1"), metadata=md("n"))
    assert got.image.target.digest == DIGEST and dict(got.image.labels) == {"x": "1"}

    listed = await s.List(
        api.ListImagesRequest(filters=[f"target.digest=={OTHER}"]), metadata=md("n")
    )
    assert [i.name for i in listed.images] == ["b:1"]
    listed = await s.List(
        api.ListImagesRequest(filters=["labels.x==1", "name==b:1"]), metadata=md("n")
    )
    assert sorted(i.name for i in listed.images) == ["a:1", "b:1"]

    upd = image("a:1", OTHER, {"y": "2"})
    upd.target.annotations["ann"] = "v"
    res = await s.Update(
        api.UpdateImageRequest(
            image=upd, update_mask=field_mask_pb2.FieldMask(paths=["labels.y", "annotations.ann"])
        ),
        metadata=md("n"),
    )
    assert dict(res.image.labels) == {"x": "1", "y": "2"}
    assert res.image.target.digest == DIGEST  # target not in the mask
    assert dict(res.image.target.annotations) == {"ann": "v"}
    assert res.image.created_at == created.image.created_at
    res = await s.Update(api.UpdateImageRequest(image=image("a:1", OTHER)), metadata=md("n"))
    assert res.image.target.digest == OTHER and dict(res.image.labels) == {}

    await s.Delete(api.DeleteImageRequest(name="a:1"), metadata=md("n"))
    with raises(errdefs.NotFound, match='image "a:1"'):
        await s.Get(api.GetImageRequest(name="a:1"), metadata=md("n"))


async def test_validation(ms: MetaServer) -> None:
    s = ms.stubs.images
    with raises(errdefs.InvalidArgument, match="Image.Name required"):
        await s.Create(api.CreateImageRequest(image=image("")), metadata=md("n"))
    with raises(errdefs.InvalidArgument, match="Target.Digest"):
        await s.Create(api.CreateImageRequest(image=image("x", "sha256:nothex")), metadata=md("n"))
    bad = image("x")
    bad.target.size = 0
    with raises(errdefs.InvalidArgument, match="Target.Size must be greater than zero"):
        await s.Create(api.CreateImageRequest(image=bad), metadata=md("n"))
    bad = image("x")
    bad.target.media_type = ""
    with raises(errdefs.InvalidArgument, match="Target.MediaType must be set"):
        await s.Create(api.CreateImageRequest(image=bad), metadata=md("n"))
    await s.Create(api.CreateImageRequest(image=image("x")), metadata=md("n"))
    with raises(errdefs.AlreadyExists, match='image "x"'):
        await s.Create(api.CreateImageRequest(image=image("x")), metadata=md("n"))
    with raises(errdefs.InvalidArgument, match='cannot update "name" field on image "x"'):
        await s.Update(
            api.UpdateImageRequest(
                image=image("x"), update_mask=field_mask_pb2.FieldMask(paths=["name"])
            ),
            metadata=md("n"),
        )
    with raises(errdefs.NotFound):
        await s.Delete(
            api.DeleteImageRequest(name="x", target=descriptor_pb2.Descriptor(digest=OTHER)),
            metadata=md("n"),
        )
    with raises(errdefs.FailedPrecondition, match="namespace is required"):
        await s.List(api.ListImagesRequest())
    with raises(errdefs.InvalidArgument):
        await s.List(api.ListImagesRequest(filters=["name=="]), metadata=md("n"))


async def test_namespaces_are_isolated(ms: MetaServer) -> None:
    s = ms.stubs.images
    await s.Create(api.CreateImageRequest(image=image("a:1")), metadata=md("one"))
    assert list((await s.List(api.ListImagesRequest(), metadata=md("two"))).images) == []
    with raises(errdefs.NotFound):
        await s.Get(api.GetImageRequest(name="a:1"), metadata=md("two"))
    with raises(errdefs.NotFound):
        await s.Update(api.UpdateImageRequest(image=image("a:1", OTHER)), metadata=md("two"))
    with raises(errdefs.NotFound):
        await s.Delete(api.DeleteImageRequest(name="a:1"), metadata=md("two"))
    # The same name in another namespace is another image.
    await s.Create(api.CreateImageRequest(image=image("a:1", OTHER)), metadata=md("two"))
    one = await s.Get(api.GetImageRequest(name="a:1"), metadata=md("one"))
    assert one.image.target.digest == DIGEST
