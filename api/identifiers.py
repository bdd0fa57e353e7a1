"""containerd's identifier rule, used for namespaces, container and lease ids.

Source of the rule: containerd ``identifiers/validate.go`` — alphanumeric runs
joined by single ``.``, ``_`` or ``-``, at most 76 characters.
"""

from __future__ import annotations

import re

from api.errdefs import InvalidArgument

MAX_LENGTH = 76
_PATTERN = r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$"
_RE = re.compile(_PATTERN)


def validate(s: str) -> None:
    """Raise InvalidArgument unless ``s`` is a valid identifier."""
    if not s:
        raise InvalidArgument("identifier must not be empty")
    if len(s) > MAX_LENGTH:
        raise InvalidArgument(
            f"identifier {s!r} greater than maximum length ({MAX_LENGTH} characters)"
        )
    if not _RE.match(s):
        raise InvalidArgument(f"identifier {s!r} must match {_PATTERN}")
