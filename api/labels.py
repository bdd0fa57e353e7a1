"""containerd's limit on labels (``labels/validate.go``), shared by every service."""

from __future__ import annotations

from collections.abc import Mapping

from api.errdefs import InvalidArgument

MAX_LABEL_SIZE = 4096


def validate_labels(labels: Mapping[str, str] | None, what: str = "info.Labels") -> None:
    """InvalidArgument when a label's key and value together exceed 4096 bytes.

    ``what`` names the field in the message, as containerd's callers do
    ("info.Labels", "image.Labels", ...); the key is cut to 10 characters.
    """
    for key, value in (labels or {}).items():
        # Sizes are in bytes, as Go's len() on strings.
        if len(key.encode()) + len(value.encode()) > MAX_LABEL_SIZE:
            raise InvalidArgument(
                f"{what}: label key and value greater than maximum size "
                f"({MAX_LABEL_SIZE} bytes), key: {key[:10]}"
            )
