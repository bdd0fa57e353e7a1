"""Runtime name -> shim binary, as containerd's ShimManager.resolveRuntimePath.

``io.containerd.runc.v2`` names ``containerd-shim-runc-v2``: the last two
dot-separated parts of the name fill ``containerd-shim-%s-%s``.  The binary
is looked for, in order: relative to the daemon's working directory (the
name's own directory joined with the binary name, a quirk of containerd's
``shim.BinaryPath``), on PATH, then beside the daemon's executable.  An
absolute path names the binary itself.

Failures are ``Unknown`` with containerd's text: containerd wraps plain Go
errors here, which reach a client as code Unknown, and callers rely on the
message naming the binary that was looked for.
"""

from __future__ import annotations

import os
import shutil
import threading

from api import errdefs

__all__ = ["RuntimeResolver", "binary_name"]

_BINARY_FORMAT = "containerd-shim-{}-{}"


def binary_name(runtime: str) -> str:
    """The shim binary's file name for ``runtime``; "" when the name is malformed."""
    parts = runtime.split(".")
    if len(parts) < 2 or parts[0] == "":
        return ""
    return _BINARY_FORMAT.format(parts[-2], parts[-1])


class RuntimeResolver:
    """Resolves runtime names to absolute shim paths, caching each answer.

    ``beside`` is the directory of the daemon's own executable (containerd
    looks there last, so a shim installed next to the daemon is found).
    ``path`` overrides the PATH searched (default: the process's PATH).
    """

    def __init__(self, beside: str | None = None, path: str | None = None) -> None:
        self._beside = beside
        self._path = path
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    def resolve(self, runtime: str) -> str:
        """The absolute path of the shim binary for ``runtime``.

        Raises Unknown when the name is empty or malformed, when an absolute
        path does not exist, or when no binary of that name is installed.
        """
        if not runtime:
            raise errdefs.Unknown("no runtime name")
        if os.path.isabs(runtime):
            try:
                os.stat(runtime)
            except OSError as e:
                raise errdefs.Unknown(
                    f"invalid custom binary path: stat {runtime}: {e.strerror}"
                ) from None
            return runtime
        name = binary_name(runtime)
        if not name:
            raise errdefs.Unknown(
                f"invalid runtime name {runtime}, correct runtime name should be either "
                "format like `io.containerd.runc.v1` or a full path to the binary"
            )
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None:
            return cached
        found = self._lookup(runtime, name)
        with self._lock:
            return self._cache.setdefault(name, found)

    def _lookup(self, runtime: str, name: str) -> str:
        local = os.path.abspath(os.path.join(os.path.dirname(runtime), name))
        if os.path.exists(local):
            return local
        on_path = shutil.which(name, path=self._path)
        if on_path is not None:
            return os.path.abspath(on_path)
        if self._beside:
            candidate = os.path.join(self._beside, name)
            if os.path.exists(candidate):
                return os.path.abspath(candidate)
        raise errdefs.Unknown(
            f'runtime "{runtime}" binary not installed "{name}": file does not exist'
        )
