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


def mountpoints() -> list[str]:
    """Every mount point of this process's mount namespace, in mountinfo order."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4:
                points.append(_unescape(fields[4]))
    return points


def _unescape(path: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(path):
        code = path[i + 1 : i + 4]
        if path[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)
