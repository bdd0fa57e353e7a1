"""containerd's input rules for metadata objects, with its error texts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from api import errdefs, identifiers
from services.content.validation import split_digest

MAX_LABEL_SIZE = 4096


def validate_labels(labels: Mapping[str, str] | None, what: str) -> None:
    """InvalidArgument when a label's key and value exceed 4096 bytes (labels/validate.go)."""
    for key, value in (labels or {}).items():
        if len(key.encode()) + len(value.encode()) > MAX_LABEL_SIZE:
            raise errdefs.InvalidArgument(
                f"{what}: label key and value greater than maximum size "
                f"({MAX_LABEL_SIZE} bytes), key: {key[:10]}"
            )


def validate_identifier(value: str, what: str = "") -> None:
    try:
        identifiers.validate(value)
    except errdefs.InvalidArgument as e:
        raise errdefs.InvalidArgument(f"{what}: {e.message}" if what else e.message) from None


def validate_digest(digest: str) -> None:
    """InvalidArgument for anything go-digest's ``Validate`` rejects."""
    split_digest(digest)


def is_digest(digest: str) -> bool:
    try:
        split_digest(digest)
    except errdefs.InvalidArgument:
        return False
    return True


def apply_label_paths(
    current: Mapping[str, str],
    requested: Mapping[str, str],
    path: str,
    prefix: str = "labels",
) -> dict[str, str] | None:
    """The labels after applying one field path, or None when ``path`` is not about them.

    ``labels`` replaces the set, ``labels.<key>`` copies one key from
    ``requested`` (an absent or empty value removes it).
    """
    if path == prefix:
        return {k: v for k, v in requested.items() if v}
    if path.startswith(prefix + "."):
        key = path[len(prefix) + 1 :]
        out = dict(current)
        value = requested.get(key, "")
        if value:
            out[key] = value
        else:
            out.pop(key, None)
        return out
    return None


def fieldpaths_or(paths: Sequence[str], default: Sequence[str]) -> list[str]:
    return list(paths) if paths else list(default)


def q(s: str) -> str:
    """``s`` quoted as Go's ``%q`` prints it, for error texts that match containerd's."""
    return json.dumps(s, ensure_ascii=False)
