"""The build identity ``ctr version`` shows (daemon.version)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from daemon.version import installed_version


@pytest.mark.parametrize(
    "name", ["berthd", "grpcio", "protobuf", "Hypothesis", "not-installed-here"]
)
def test_installed_version_agrees_with_importlib_metadata(name: str) -> None:
    try:
        expected: str | None = metadata.version(name)
    except metadata.PackageNotFoundError:
        expected = None
    assert installed_version(name) == expected


def test_unknown_and_unreadable_distributions(tmp_path: Path) -> None:
    assert installed_version("no-such-distribution") is None
    # A dist-info without METADATA, then one whose headers have no Version:
    # neither is taken, and a later entry of the path still is.
    (tmp_path / "a" / "demo_pkg-1.0.dist-info").mkdir(parents=True)
    (tmp_path / "b" / "demo_pkg-2.0.dist-info").mkdir(parents=True)
    (tmp_path / "b" / "demo_pkg-2.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: demo-pkg\n\nVersion: 9 (the body, not a header)\n"
    )
    (tmp_path / "c" / "demo_pkg-3.0.dist-info").mkdir(parents=True)
    (tmp_path / "c" / "demo_pkg-3.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 3.0\n"
    )
    path = [str(tmp_path / d) for d in "abc"]
    assert installed_version("demo-pkg", path) == "3.0"
    assert installed_version("Demo.Pkg", path) == "3.0"  # names compare normalized
    # An egg-info (a setuptools develop install) earlier on the path wins.
    (tmp_path / "a" / "demo_pkg.egg-info").mkdir()
    (tmp_path / "a" / "demo_pkg.egg-info" / "PKG-INFO").write_text(
        "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 0.5\n"
    )
    assert installed_version("demo-pkg", path) == "0.5"
