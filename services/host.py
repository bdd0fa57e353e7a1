"""Facts about the host every plugin process may need (no gRPC, no service)."""

from __future__ import annotations


def in_user_namespace() -> bool:
    """True inside a user namespace other than the initial one (mknod of
    whiteouts and some overlay options fail there)."""
    try:
        with open("/proc/self/uid_map") as f:
            fields = f.read().split()
    except OSError:
        return False
    # The initial namespace maps the whole range: "0 0 4294967295".
    return fields[:3] != ["0", "0", "4294967295"]
