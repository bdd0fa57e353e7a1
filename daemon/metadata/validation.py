"""containerd's input rules for metadata objects, with its error texts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from api import errdefs, identifiers
from api.goquote import go_quote
from api.labels import validate_labels as validate_labels  # re-exported for its users
from services.content.validation import split_digest


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


q = go_quote
