"""Layer media types and what each says about compression.

Mirrors containerd's ``images.DiffCompression``
(v1.6.20:images/mediatypes.go): the Docker tar type may carry compressed
data despite its name, so its compression is "unknown" and detected from the
stream; a wrapped type (``+encrypted`` …) is left to stream processors.
"""

from __future__ import annotations

import enum

from api import errdefs

LAYER = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = LAYER + "+gzip"
LAYER_ZSTD = LAYER + "+zstd"
LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

# Label containerd puts on a compressed layer blob naming its uncompressed digest.
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"

KNOWN = (
    LAYER,
    LAYER_GZIP,
    LAYER_ZSTD,
    LAYER_NONDISTRIBUTABLE,
    LAYER_NONDISTRIBUTABLE + "+gzip",
    LAYER_NONDISTRIBUTABLE + "+zstd",
    DOCKER_LAYER,
    DOCKER_LAYER_FOREIGN,
    DOCKER_LAYER_GZIP,
    DOCKER_LAYER_FOREIGN_GZIP,
)


class Declared(enum.Enum):
    """The compression a media type declares."""

    NONE = "none"  # plain tar: read as is
    GZIP = "gzip"
    ZSTD = "zstd"
    UNKNOWN = "unknown"  # may be compressed: detect from the magic number


def _parse(media_type: str) -> tuple[str, list[str]]:
    base, *ext = media_type.split("+")
    return base, sorted(ext)


def diff_compression(media_type: str) -> Declared:
    """The declared compression of a layer media type.

    Raises errdefs.NotImplemented for anything that is not a layer media type.
    """
    base, ext = _parse(media_type)
    if base in (DOCKER_LAYER, DOCKER_LAYER_FOREIGN):
        return Declared.NONE if ext else Declared.UNKNOWN
    if base in (DOCKER_LAYER_GZIP, DOCKER_LAYER_FOREIGN_GZIP):
        return Declared.NONE if ext else Declared.GZIP
    if base in (LAYER, LAYER_NONDISTRIBUTABLE):
        # containerd looks at the last extension in sorted order only.
        if ext and ext[-1] == "gzip":
            return Declared.GZIP
        if ext and ext[-1] == "zstd":
            return Declared.ZSTD
        return Declared.NONE
    raise errdefs.NotImplemented(f"unsupported media type {media_type!r}")


def metric_label(media_type: str) -> str:
    """``media_type`` as a metric label value: known types as is, anything else "other"."""
    return media_type if media_type in KNOWN else "other"
