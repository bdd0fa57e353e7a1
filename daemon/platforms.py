"""OCI platform strings ("linux/arm64/v8") as containerd's platforms package reads them."""

from __future__ import annotations

import platform as _platform

from api.errdefs import InvalidArgument
from daemon.registry import Platform

# containerd's normalizeArch: (arch, variant) aliases.
_ARCH = {
    "i386": ("386", ""),
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "arm": ("arm", "v7"),
}
_OS = {"macos": "darwin"}


def _normalize(os_name: str, arch: str, variant: str) -> Platform:
    os_name = _OS.get(os_name.lower(), os_name.lower())
    arch, default_variant = _ARCH.get(arch.lower(), (arch.lower(), ""))
    variant = variant.lower() or default_variant
    if arch == "arm64" and variant in ("8", "v8"):
        variant = ""  # containerd drops arm64's default variant when normalizing
    if arch == "arm" and variant in ("5", "6", "7", "8"):
        variant = "v" + variant
    return Platform(os_name, arch, variant)


def default() -> Platform:
    return _normalize("linux", _platform.machine() or "amd64", "")


def parse(spec: str) -> Platform:
    """ "os[/arch[/variant]]", or a bare architecture meaning this OS."""
    parts = spec.split("/")
    if not spec or len(parts) > 3 or any(not p for p in parts):
        raise InvalidArgument(f"{spec!r}: invalid platform specifier")
    if len(parts) == 1:
        if parts[0].lower() in ("linux", "windows", "darwin", "freebsd", "macos"):
            return _normalize(parts[0], default().architecture, "")
        return _normalize("linux", parts[0], "")
    return _normalize(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def format_platform(p: Platform) -> str:
    return "/".join(x for x in (p.os, p.architecture, p.variant) if x)
