"""Input rules shared by the content store, its servicer and its clients.

Both rules are containerd's: digests as go-digest's ``Digest.Validate``
accepts them, labels as ``labels/validate.go`` limits them (key and value
together at most 4096 bytes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from api.errdefs import InvalidArgument
from api.labels import validate_labels as validate_labels  # re-exported for its users

# Hex length of each algorithm go-digest registers (containerd links all three).
ALGORITHMS: Mapping[str, int] = {"sha256": 64, "sha384": 96, "sha512": 128}
CANONICAL = "sha256"

_DIGEST_SHAPE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_HEX = re.compile(r"^[a-f0-9]+$")


def split_digest(digest: str) -> tuple[str, str]:
    """``(algorithm, hex)`` of a valid digest; InvalidArgument otherwise."""
    alg, sep, encoded = digest.partition(":")
    if not sep or not alg or not encoded:
        raise InvalidArgument(f"{digest!r}: invalid checksum digest format")
    size = ALGORITHMS.get(alg)
    if size is None:
        if not _DIGEST_SHAPE.match(digest):
            raise InvalidArgument(f"{digest!r}: invalid checksum digest format")
        raise InvalidArgument(f"{digest!r}: unsupported digest algorithm")
    if len(encoded) != size:
        raise InvalidArgument(f"{digest!r}: invalid checksum digest length")
    if not _HEX.match(encoded):
        raise InvalidArgument(f"{digest!r}: invalid checksum digest format")
    return alg, encoded


def validate_digest(digest: str) -> None:
    split_digest(digest)
