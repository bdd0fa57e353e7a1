"""Stand-ins for the public images containerd's client tests pull, built offline.

Each stand-in has the shape the tests check, not the upstream bytes: the same
kind of manifest (Docker manifest list, Docker schema 2, signed schema 1), the
platforms the tests select or count, distinct layers per platform (so pulling
one platform leaves the others' blobs absent, as usage accounting expects),
and for images that run, a root filesystem of busybox-static with every
applet, plus the busybox image's users and groups (``www-data`` is uid 33).

Two references are pinned by upstream digest to schema 1 manifests whose
bytes cannot be reproduced; ``Catalogue.pins`` maps those digests to the
stand-ins' own, and the test process's redirect applies the map.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tests.integration.containerd_client import schema1
from tests.support.oci import go_arch

BUSYBOX = Path("/bin/busybox")
FIXED_MTIME = 1_700_000_000

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The users and groups of the busybox image the tests were written against.
PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
GROUP = """\
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
staff:x:50:
users:x:100:
nogroup:x:65534:
"""

# Applets whose busybox-static build behaves unlike the upstream image's.
SCRIPTS = {
    # Debian builds busybox's small nc, which installs no signal handler, so as
    # a container's pid 1 it ignores SIGTERM; the upstream image's full nc
    # exits on it (TestBindLowPortNonOpt stops its listener that way).
    "nc": """\
#!/bin/sh
# berthd stand-in: busybox nc that exits on SIGTERM even as pid 1
busybox nc "$@" <&0 &
child=$!
trap 'kill -TERM "$child" 2>/dev/null; exit 143' TERM
wait "$child"
""",
}

Platform = Mapping[str, str]


def platform(os_arch: str, **extra: str) -> dict[str, str]:
    """``"linux/arm64/v8"`` -> an OCI platform object."""
    parts = os_arch.split("/")
    out = {"os": parts[0], "architecture": parts[1]}
    if len(parts) > 2:
        out["variant"] = parts[2]
    out.update(extra)
    return out


def host_platform() -> dict[str, str]:
    arch = go_arch()
    return platform(f"linux/{arch}/v8") if arch == "arm64" else platform(f"linux/{arch}")


def platform_name(p: Platform) -> str:
    return "/".join(p[k] for k in ("os", "architecture", "variant") if k in p)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.data)

    def descriptor(self, **extra: object) -> dict[str, object]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
            **extra,
        }


# --- layers -----------------------------------------------------------------


class _Tar:
    """A reproducible tar, entry by entry (parents before children)."""

    def __init__(self) -> None:
        self.entries: list[tuple[tarfile.TarInfo, bytes | None]] = []

    def _add(self, name: str, kind: bytes, mode: int, data: bytes | None = None) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, FIXED_MTIME
        if data is not None:
            info.size = len(data)
        self.entries.append((info, data))

    def dir(self, name: str, mode: int = 0o755) -> None:
        self._add(name, tarfile.DIRTYPE, mode)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._add(name, tarfile.REGTYPE, mode, data)

    def hardlink(self, name: str, target: str) -> None:
        self._add(name, tarfile.LNKTYPE, 0o755)
        self.entries[-1][0].linkname = target

    def bytes(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for info, data in self.entries:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def busybox_applets() -> list[str]:
    out = subprocess.run(
        [str(BUSYBOX), "--list"], check=True, capture_output=True, text=True
    ).stdout
    return sorted(a for a in out.split() if a and a != "busybox" and "/" not in a)


@cache
def busybox_rootfs() -> bytes:
    """The uncompressed root layer: /bin/busybox, every applet linked in /bin, /etc."""
    if not BUSYBOX.exists():
        raise FileNotFoundError(f"{BUSYBOX} is missing (apt-get install busybox-static)")
    t = _Tar()
    for d in ("bin", "dev", "etc", "home", "proc", "sys", "usr", "usr/bin", "usr/sbin", "var"):
        t.dir(d)
    t.dir("root", 0o700)
    t.dir("tmp", 0o1777)
    t.dir("var/www")
    t.dir("var/spool")
    t.dir("var/spool/mail")
    t.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    for applet in busybox_applets():
        if applet in SCRIPTS:
            t.file(f"bin/{applet}", SCRIPTS[applet].encode(), 0o755)
        else:
            t.hardlink(f"bin/{applet}", "bin/busybox")
    t.file("etc/passwd", PASSWD.encode())
    t.file("etc/group", GROUP.encode())
    return t.bytes()


def files_layer(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed layer of regular files (their parent directories included)."""
    t = _Tar()
    dirs: set[str] = set()
    for path in sorted(files):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                t.dir(d)
        t.file(path, files[path])
    return t.bytes()


def placeholder_layer(image: str, p: Platform) -> bytes:
    """A layer for a platform no test runs: one file naming what it stands for."""
    text = f"stand-in for {image} on {platform_name(p)}; not runnable\n"
    return files_layer({"etc/standin": text.encode()})


def gzipped(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=6, mtime=0)


# --- repositories -------------------------------------------------------------


def repository_of(reference: str) -> tuple[str, str]:
    """``host/path:tag`` -> (repository in the local registry, tag).

    The local repository is the upstream host followed by the upstream path,
    which is what the redirect in the test process rewrites a request to
    (Docker Hub is reached at registry-1.docker.io).
    """
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:
        name, tag = reference, "latest"
    host, _, path = name.partition("/")
    if "." not in host and ":" not in host and host != "localhost":
        host, path = "docker.io", name
    if host == "docker.io":
        host = "registry-1.docker.io"
        if "/" not in path:
            path = "library/" + path
    return f"{host}/{path}", tag


@dataclass(frozen=True)
class Manifest:
    reference: str  # tag or digest to push it under
    media_type: str
    data: bytes
    digest: str  # what the registry must name it (schema 1: its canonical payload's digest)


@dataclass
class Repository:
    """What to push to one repository: blobs, then manifests in order."""

    name: str
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: list[Manifest] = field(default_factory=list)  # children before their lists

    def add_blob(self, blob: Blob) -> Blob:
        self.blobs[blob.digest] = blob.data
        return blob

    def add_manifest(self, blob: Blob, reference: str | None = None) -> Blob:
        self.manifests.append(
            Manifest(reference or blob.digest, blob.media_type, blob.data, blob.digest)
        )
        return blob

    def image(
        self, p: Platform, layers: Sequence[bytes], config: Mapping[str, object] | None = None
    ) -> Blob:
        """A Docker schema 2 image of uncompressed ``layers`` (gzipped here)."""
        descs = [self.add_blob(Blob(DOCKER_LAYER, gzipped(raw))).descriptor() for raw in layers]
        cfg: dict[str, object] = {
            "architecture": p["architecture"],
            "os": p["os"],
            "config": {"Env": [PATH_ENV], "Cmd": ["sh"], **(config or {})},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(raw) for raw in layers]},
            "history": [{"created_by": "berthd stand-in layer"} for _ in layers],
        }
        for key in ("variant", "os.version"):
            if key in p:
                cfg[key] = p[key]
        config_blob = self.add_blob(Blob(DOCKER_CONFIG, json.dumps(cfg, indent=2).encode()))
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config_blob.descriptor(),
            "layers": descs,
        }
        return self.add_manifest(Blob(DOCKER_MANIFEST, json.dumps(manifest, indent=3).encode()))

    def manifest_list(self, entries: Sequence[tuple[Blob, Platform]], tag: str) -> Blob:
        doc = {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [m.descriptor(platform=dict(p)) for m, p in entries],
        }
        return self.add_manifest(Blob(DOCKER_LIST, json.dumps(doc, indent=3).encode()), tag)


@dataclass
class Catalogue:
    repositories: list[Repository] = field(default_factory=list)
    # upstream digest -> stand-in digest, for references pinned upstream
    pins: dict[str, str] = field(default_factory=dict)

    def repository(self, reference: str) -> tuple[Repository, str]:
        name, tag = repository_of(reference)
        repo = Repository(name)
        self.repositories.append(repo)
        return repo, tag


def _multi_platform(
    cat: Catalogue,
    reference: str,
    platforms: Sequence[Platform],
    runnable: Sequence[bytes] | None,
    config: Mapping[str, object] | None = None,
) -> None:
    """A manifest list; the host's entry gets ``runnable`` layers, the others placeholders."""
    repo, tag = cat.repository(reference)
    host = host_platform()
    entries = []
    for p in platforms:
        if runnable is not None and platform_name(p) == platform_name(host):
            layers = list(runnable)
        else:
            layers = [placeholder_layer(reference, p)]
        entries.append((repo.image(p, layers, config), p))
    repo.manifest_list(entries, tag)


def _with_host(names: Sequence[str]) -> list[dict[str, str]]:
    """Platforms named, with the host's first (added when it is not among them)."""
    host = host_platform()
    others = [platform(n) for n in names if platform_name(platform(n)) != platform_name(host)]
    return [host, *others]


def _schema1(
    cat: Catalogue,
    reference: str,
    upstream_digest: str,
    layers: Sequence[tuple[bytes | None, str]],
    key: schema1.SigningKey,
) -> None:
    """A signed schema 1 manifest pinned upstream by ``upstream_digest``.

    ``layers`` go top first, as schema 1 lists them: ``(raw tar, how)`` where
    ``how`` is ``"data"``, or for an empty layer (``raw`` None) the history
    field that marks it: ``"throwaway"`` or the older ``"size0"``.
    """
    repo, tag = cat.repository(reference)
    name = repo.name
    host = host_platform()
    fs_layers = []
    history = []
    ids = [hashlib.sha256(f"{reference}/{i}".encode()).hexdigest() for i in range(len(layers))]
    for i, (raw, how) in enumerate(layers):
        blob = repo.add_blob(Blob(DOCKER_LAYER, gzipped(raw if raw is not None else b"\0" * 1024)))
        fs_layers.append({"blobSum": blob.digest})
        v1: dict[str, object] = {"id": ids[i], "created": "2016-05-04T06:26:41.522308365Z"}
        if i + 1 < len(layers):
            v1["parent"] = ids[i + 1]
        if how == "throwaway":
            v1["throwaway"] = True
        elif how == "size0":
            v1["Size"] = 0
        v1["container_config"] = {"Cmd": [f"/bin/sh -c #(nop) stand-in layer {i}"]}
        if i == 0:  # the top entry carries the image config
            v1.update(
                architecture=host["architecture"],
                os="linux",
                config={"Env": [PATH_ENV], "Cmd": ["sh"]},
            )
        history.append({"v1Compatibility": json.dumps(v1, separators=(",", ":"))})
    manifest = {
        "schemaVersion": 1,
        "name": name.split("/", 1)[1],
        "tag": tag,
        "architecture": host["architecture"],
        "fsLayers": fs_layers,
        "history": history,
    }
    signed, canonical = schema1.sign(manifest, key)
    repo.manifests.append(Manifest(tag, schema1.MEDIA_TYPE, signed, digest_of(canonical)))
    cat.pins[upstream_digest] = digest_of(canonical)


def catalogue(key: schema1.SigningKey) -> Catalogue:
    """Every image reference containerd v1.6.20's client tests use on Linux."""
    cat = Catalogue()
    busybox = busybox_rootfs()
    # testImage: Docker manifest list, Docker media types (TestConvert turns
    # them into OCI), more than one platform (it also keeps only one).
    _multi_platform(
        cat,
        "ghcr.io/containerd/busybox:1.32",
        _with_host(["linux/arm64/v8", "linux/s390x"]),
        [busybox],
    )
    # testMultiLayeredImage: several layers over busybox, with a volume.
    _multi_platform(
        cat,
        "ghcr.io/containerd/volume-copy-up:2.1",
        _with_host(["linux/arm64/v8"]),
        [
            busybox,
            files_layer({"test_dir/test_file": b"test_content\n"}),
            files_layer({"test_dir/other": b"more\n", "etc/standin": b"volume-copy-up\n"}),
        ],
        {"Volumes": {"/test_dir": {}}},
    )
    # testUserNSImage: runs `sh -c "exit 7"` in a user namespace.
    _multi_platform(
        cat,
        "ghcr.io/containerd/alpine:3.14.0",
        _with_host(["linux/arm64/v8"]),
        [busybox, files_layer({"etc/alpine-release": b"3.14.0\n"})],
    )
    # pause: fetched for all platforms, one platform, then the rest (usage
    # accounting needs the other platforms' layers to be distinct).
    pause_platforms = _with_host(
        ["linux/amd64", "linux/arm/v7", "linux/arm64/v8", "linux/ppc64le", "linux/s390x"]
    )
    for ref in ("k8s.gcr.io/pause:3.6", "registry.k8s.io/pause:3.6"):
        _multi_platform(cat, ref, pause_platforms, None, {"Entrypoint": ["/pause"], "Cmd": []})
    # Fetched for exactly linux/amd64, linux/arm64/v8 and linux/s390x, one
    # manifest each, among platforms that must stay unfetched.
    _multi_platform(
        cat,
        "registry.k8s.io/e2e-test-images/busybox:1.29-2",
        _with_host(
            ["linux/amd64", "linux/arm/v7", "linux/arm64/v8", "linux/ppc64le", "linux/s390x"]
        ),
        [busybox],
    )
    # Must fail to pull for linux: windows only.
    repo, tag = cat.repository("mcr.microsoft.com/windows/nanoserver:1809")
    win = platform("windows/amd64", **{"os.version": "10.0.17763.4252"})
    layer = placeholder_layer("nanoserver", win)
    repo.manifest_list([(repo.image(win, [layer], {"Cmd": ["cmd"]}), win)], tag)
    # Schema 1, pinned by digest; the second is unpacked.
    _schema1(
        cat,
        "gcr.io/google_containers/pause:3.0",
        "sha256:0d093c962a6c2dd8bb8727b661e2b5f13e9df884af9945b4cc7088d9350cd3ee",
        [(None, "throwaway"), (files_layer({"pause": b"stand-in pause\n"}), "data")],
        key,
    )
    _schema1(
        cat,
        "gcr.io/google-containers/busybox:standin",
        "sha256:d8d3bc2c183ed2f9f10e7258f84971202325ee6011ba137112e01e30f206de67",
        [
            (None, "throwaway"),
            (files_layer({"etc/standin": b"schema 1 with empty layers\n"}), "data"),
            (None, "size0"),
            (busybox, "data"),
        ],
        key,
    )
    return cat
