"""OCI image fixtures built by the tests themselves, from busybox-static.

``build_image_tar`` writes an OCI image layout as a tar that the real
``ctr images import`` accepts.  The default image has one layer with
/bin/busybox and the applet links a test needs, so ``ctr run --rm IMAGE id
echo hi`` prints "hi".  No network is involved.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh",
    "echo",
    "cat",
    "ls",
    "sleep",
    "true",
    "false",
    "id",
    "touch",
    "rm",
    "mkdir",
    "stat",
    "sync",
)
LAYER_MEDIA_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
FIXED_MTIME = 1_700_000_000

Layer = Mapping[str, bytes]


def need_busybox() -> None:
    if not BUSYBOX.exists():
        pytest.skip("needs /bin/busybox (apt-get install busybox-static)")


def go_arch() -> str:
    machine = platform.machine()
    return {
        "x86_64": "amd64",
        "aarch64": "arm64",
        "armv7l": "arm",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
    }.get(machine, machine)


def layer_tar(files: Layer, *, busybox: bool = False) -> bytes:
    """An uncompressed, reproducible layer tar of ``files`` (path -> content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()

        def add_dirs(path: str) -> None:
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    info.mtime = FIXED_MTIME
                    tar.addfile(info)

        if busybox:
            add_dirs("bin/busybox")
            data = BUSYBOX.read_bytes()
            info = tarfile.TarInfo("bin/busybox")
            info.size, info.mode, info.mtime = len(data), 0o755, FIXED_MTIME
            tar.addfile(info, io.BytesIO(data))
            for applet in APPLETS:
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname, link.mtime = tarfile.SYMTYPE, "busybox", FIXED_MTIME
                link.mode = 0o777
                tar.addfile(link)
            for d in ("tmp", "etc", "proc", "sys", "dev"):
                info = tarfile.TarInfo(d)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, FIXED_MTIME
                dirs.add(d)
                tar.addfile(info)
        for path, content in sorted(files.items()):
            add_dirs(path)
            info = tarfile.TarInfo(path.strip("/"))
            info.size, info.mode, info.mtime = len(content), 0o644, FIXED_MTIME
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        import zstandard

        return bytes(zstandard.ZstdCompressor().compress(data))
    if compression == "none":
        return data
    raise ValueError(f"unknown compression {compression!r}")


def _add_blob(tar: tarfile.TarFile, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + digest.split(":", 1)[1])
    info.size, info.mode, info.mtime = len(data), 0o644, FIXED_MTIME
    tar.addfile(info, io.BytesIO(data))
    return digest


def build_image_tar(
    dest: Path,
    name: str = "docker.io/library/berth-test:latest",
    layers: list[Layer] | None = None,
    compression: str = "gzip",
    busybox: bool = True,
) -> Path:
    """Write an OCI layout tar at ``dest``; returns ``dest``.

    The first layer carries busybox (unless ``busybox=False``); each mapping in
    ``layers`` adds one more layer of regular files.
    """
    if busybox:
        need_busybox()
    raw_layers = []
    if busybox:
        raw_layers.append(layer_tar({}, busybox=True))
    raw_layers.extend(layer_tar(files) for files in layers or [])
    if not raw_layers:
        raise ValueError("an image needs at least one layer")
    with tarfile.open(dest, "w") as tar:
        layer_descs = []
        diff_ids = []
        for raw in raw_layers:
            blob = compress(raw, compression)
            digest = _add_blob(tar, blob)
            layer_descs.append(
                {"mediaType": LAYER_MEDIA_TYPES[compression], "digest": digest, "size": len(blob)}
            )
            diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        config = json.dumps(
            {
                "architecture": go_arch(),
                "os": "linux",
                "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            },
            sort_keys=True,
        ).encode()
        config_digest = _add_blob(tar, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": len(config)},
                "layers": layer_descs,
            },
            sort_keys=True,
        ).encode()
        manifest_digest = _add_blob(tar, manifest)
        tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
        index = json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": MANIFEST_TYPE,
                        "digest": manifest_digest,
                        "size": len(manifest),
                        "annotations": {
                            "io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": tag,
                        },
                    }
                ],
            }
        ).encode()
        for fname, data in (
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", index),
        ):
            info = tarfile.TarInfo(fname)
            info.size, info.mode, info.mtime = len(data), 0o644, FIXED_MTIME
            tar.addfile(info, io.BytesIO(data))
    return dest


def random_layers(count: int, size: int) -> list[Layer]:
    """``count`` layers of one file of ``size`` random bytes each (incompressible:
    build them with ``compression="none"``)."""
    return [{f"data/blob{i}": os.urandom(size)} for i in range(count)]


def blob_digests(tar_path: Path) -> dict[str, int]:
    """Digest -> size of every blob in an OCI layout tar."""
    with tarfile.open(tar_path) as tar:
        return {
            "sha256:" + m.name.rsplit("/", 1)[1]: m.size
            for m in tar.getmembers()
            if m.name.startswith("blobs/sha256/")
        }


def manifest_layers(tar_path: Path) -> list[str]:
    """The layer digests of the (one) image in an OCI layout tar, in order."""
    with tarfile.open(tar_path) as tar:

        def blob(digest: str) -> dict[str, object]:
            f = tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
            assert f is not None
            return dict(json.loads(f.read()))

        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.loads(index_file.read())
        manifest = blob(index["manifests"][0]["digest"])
        return [str(layer["digest"]) for layer in manifest["layers"]]  # type: ignore[attr-defined]
