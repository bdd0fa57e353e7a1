"""Runtime name -> shim binary resolution (containerd's resolveRuntimePath)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from api import errdefs
from services.tasks.binary import RuntimeResolver, binary_name


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    ("runtime", "name"),
    [
        ("io.containerd.runc.v2", "containerd-shim-runc-v2"),
        ("io.containerd.runc.v1", "containerd-shim-runc-v1"),
        ("io.containerd.runsc.v1", "containerd-shim-runsc-v1"),
        ("kata.v2", "containerd-shim-kata-v2"),
        ("runc", ""),
        (".runc.v2", ""),
        ("", ""),
    ],
)
def test_binary_name(runtime: str, name: str) -> None:
    assert binary_name(runtime) == name


def test_unknown_runtime_names_the_binary(tmp_path: Path) -> None:
    resolver = RuntimeResolver(beside=str(tmp_path), path=str(tmp_path))
    with pytest.raises(errdefs.Unknown) as exc:
        resolver.resolve("io.containerd.nosuch.v9")
    assert "containerd-shim-nosuch-v9" in str(exc.value)
    assert "binary not installed" in str(exc.value)


def test_malformed_and_empty_names(tmp_path: Path) -> None:
    resolver = RuntimeResolver(path=str(tmp_path))
    with pytest.raises(errdefs.Unknown, match="invalid runtime name runc"):
        resolver.resolve("runc")
    with pytest.raises(errdefs.Unknown, match="no runtime name"):
        resolver.resolve("")


def test_found_on_path(tmp_path: Path) -> None:
    shim = _executable(tmp_path / "containerd-shim-fake-v1")
    resolver = RuntimeResolver(path=str(tmp_path))
    assert resolver.resolve("io.containerd.fake.v1") == str(shim)


def test_found_beside_the_daemon(tmp_path: Path) -> None:
    beside = tmp_path / "bin"
    beside.mkdir()
    shim = _executable(beside / "containerd-shim-fake-v1")
    empty = tmp_path / "empty"
    empty.mkdir()
    resolver = RuntimeResolver(beside=str(beside), path=str(empty))
    assert resolver.resolve("io.containerd.fake.v1") == str(shim)


def test_path_wins_over_beside(tmp_path: Path) -> None:
    on_path = tmp_path / "path"
    beside = tmp_path / "beside"
    on_path.mkdir()
    beside.mkdir()
    first = _executable(on_path / "containerd-shim-fake-v1")
    _executable(beside / "containerd-shim-fake-v1")
    resolver = RuntimeResolver(beside=str(beside), path=str(on_path))
    assert resolver.resolve("io.containerd.fake.v1") == str(first)


def test_working_directory_quirk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # containerd's BinaryPath joins the name's directory ("." here) with the
    # binary name, so a shim in the daemon's working directory wins.
    shim = _executable(tmp_path / "containerd-shim-fake-v1")
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    resolver = RuntimeResolver(path=str(empty))
    assert resolver.resolve("io.containerd.fake.v1") == str(shim)


def test_absolute_path(tmp_path: Path) -> None:
    shim = _executable(tmp_path / "my-shim")
    resolver = RuntimeResolver(path=str(tmp_path))
    assert resolver.resolve(str(shim)) == str(shim)
    with pytest.raises(errdefs.Unknown, match="invalid custom binary path"):
        resolver.resolve(str(tmp_path / "missing-shim"))


def test_resolution_is_cached(tmp_path: Path) -> None:
    shim = _executable(tmp_path / "containerd-shim-fake-v1")
    resolver = RuntimeResolver(path=str(tmp_path))
    assert resolver.resolve("io.containerd.fake.v1") == str(shim)
    shim.unlink()
    # containerd caches per binary name for the life of the manager.
    assert resolver.resolve("io.containerd.fake.v1") == str(shim)
    with pytest.raises(errdefs.Unknown):
        RuntimeResolver(path=str(tmp_path)).resolve("io.containerd.fake.v1")


def test_real_runc_shim() -> None:
    real = shutil.which("containerd-shim-runc-v2")
    if real is None:
        pytest.skip("needs containerd-shim-runc-v2 (apt-get install containerd)")
    assert RuntimeResolver().resolve("io.containerd.runc.v2") == os.path.abspath(real)
