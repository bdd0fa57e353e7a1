"""The ttrpc path never loads grpc (design: "no grpc import on its path")."""

from __future__ import annotations

import subprocess

import pytest

from tests.support import PYTHON, REPO

CHECK = """
import sys
import {module}
loaded = sorted(m for m in sys.modules if m == "grpc" or m.startswith(("grpc.", "grpc_", "_grpc")))
print(",".join(loaded))
"""


@pytest.mark.parametrize(
    "module",
    ["api.ttrpc.client", "api.ttrpc.server", "api.ttrpc", "api.errcodes", "api.sockets"],
)
def test_module_does_not_import_grpc(module: str) -> None:
    out = subprocess.run(
        [PYTHON, "-c", CHECK.format(module=module)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing {module} loaded {out.stdout.strip()}"


def test_the_check_sees_grpc_when_it_is_imported() -> None:
    """The probe itself works: importing the gRPC error edge does load grpc."""
    out = subprocess.run(
        [PYTHON, "-c", CHECK.format(module="api.errgrpc")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "grpc" in out.stdout.split(",")
