"""The committed generated modules are exactly what the .proto files produce.

Fails when someone edits a .proto without running ``python scripts/genproto.py``.
"""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

import pytest

from tests.support import PYTHON, REPO

GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _generated(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in (root / "api").rglob("*")
        if p.name.endswith(GENERATED_SUFFIXES)
    }


def test_generated_modules_are_current(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="needs the dev extra (grpcio-tools)")
    out = subprocess.run(
        [PYTHON, str(REPO / "scripts" / "genproto.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    fresh, committed = _generated(tmp_path), _generated(REPO)
    assert fresh == committed, (
        f"missing: {sorted(fresh - committed)}, stale extras: {sorted(committed - fresh)}; "
        "run: python scripts/genproto.py"
    )
    stale = [f for f in sorted(fresh) if not filecmp.cmp(tmp_path / f, REPO / f, shallow=False)]
    assert not stale, f"out of date (run: python scripts/genproto.py): {stale}"
