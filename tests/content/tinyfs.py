"""A tiny tmpfs to fill up for real (needs root): ENOSPC from the kernel, not a mock."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support import need_root


class TinyFs:
    def __init__(self, where: Path) -> None:
        self.where = where

    def resize(self, size: str) -> None:
        """Grow (or shrink) the filesystem in place; what is on it stays."""
        subprocess.run(
            ["mount", "-o", f"remount,size={size}", str(self.where)],
            check=True,
            capture_output=True,
        )


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str = "1m") -> Iterator[TinyFs]:
    """A tmpfs of ``size`` mounted on ``where`` (created) for the block."""
    need_root()
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        check=True,
        capture_output=True,
    )
    try:
        yield TinyFs(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)
