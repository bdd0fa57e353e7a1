"""Extract containerd's client tests and compile them offline with Debian's Go.

The tests come from a containerd git repository (``git archive TAG
integration/client``) or a directory already holding them.  They compile in
GOPATH mode (GO111MODULE=off, GOPROXY=off) against the sources Debian ships
in /usr/share/gocode (``golang-github-containerd-containerd-dev`` and the
-dev packages it depends on); their go.mod is dropped, since GOPATH mode does
not read it.  The package is built under an import path of its own, with our
redirect file (``standin_registry_test.go``) added beside containerd's files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

TAG = "v1.6.20"
DEFAULT_SOURCE = Path("/work/.mirror/containerd+containerd/repo")
GOCODE = Path("/usr/share/gocode")
PACKAGE = "berthd.test/containerdclient"
REDIRECT = Path(__file__).with_name("standin_registry_test.go")
# gotest.tools' major version 3 lives at the unversioned path in Debian.
GOPATH_ALIASES = {"gotest.tools/v3": GOCODE / "src/gotest.tools"}


class BuildError(RuntimeError):
    pass


def default_source() -> Path:
    return Path(os.environ.get("CONTAINERD_SOURCE", str(DEFAULT_SOURCE)))


def _is_git(path: Path) -> bool:
    probe = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--git-dir"], capture_output=True, check=False
    )
    return probe.returncode == 0


def extract(source: Path, dest: Path, tag: str = TAG) -> Path:
    """Put containerd's ``integration/client`` files in ``dest``; returns ``dest``.

    ``source`` is a containerd repository (bare or not; ``tag`` is read from
    it), a containerd tree, or the ``integration/client`` directory itself.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if _is_git(source) and not (source / "client_test.go").exists():
        archive = subprocess.run(
            ["git", "-C", str(source), "archive", tag, "integration/client"],
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            raise BuildError(f"git archive {tag} from {source}: {archive.stderr.decode().strip()}")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            _copy_go_files(Path(tmp) / "integration/client", dest)
        return dest
    for candidate in (source, source / "integration/client"):
        if (candidate / "client_test.go").exists():
            _copy_go_files(candidate, dest)
            return dest
    raise BuildError(
        f"{source} is neither a containerd repository nor a tree with its client tests"
    )


def _copy_go_files(src: Path, dest: Path) -> None:
    files = sorted(src.glob("*.go"))
    if not files:
        raise BuildError(f"no Go files in {src}")
    for f in files:
        shutil.copy2(f, dest / f.name)


@dataclass(frozen=True)
class Toolchain:
    go: str
    version: str  # "go1.19.8"


def toolchain() -> Toolchain:
    go = shutil.which("go")
    if go is None:
        raise BuildError("go not found (apt-get install golang-go)")
    out = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"\bgo(\d+)\.(\d+)(?:\.\d+)?\b", out)
    if m is None:
        raise BuildError(f"cannot read the Go version from {out!r}")
    # GOPATH mode is what builds over Debian's sources; it went away in 1.22.
    if (int(m.group(1)), int(m.group(2))) >= (1, 22):
        raise BuildError(f"{out.strip()}: GOPATH mode needs Go < 1.22 (Debian 12's golang-go)")
    if not (GOCODE / "src/github.com/containerd/containerd/client.go").exists():
        raise BuildError(
            f"{GOCODE}/src/github.com/containerd/containerd is missing "
            "(apt-get install golang-github-containerd-containerd-dev)"
        )
    return Toolchain(go, m.group(0))


def go_env(gopath: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOPATH=f"{gopath}{os.pathsep}{GOCODE}",
        GO111MODULE="off",
        GOPROXY="off",
        GOFLAGS="",
        GOTOOLCHAIN="local",
        CGO_ENABLED=env.get("CGO_ENABLED", "1"),
    )
    env.setdefault("GOCACHE", str(Path.home() / ".cache" / "go-build"))
    return env


def build(source: Path, workdir: Path, tag: str = TAG) -> Path:
    """Extract, add the redirect, compile; returns the test binary's path."""
    tc = toolchain()
    gopath = workdir / "gopath"
    pkg_dir = gopath / "src" / PACKAGE
    if pkg_dir.exists():
        shutil.rmtree(pkg_dir)
    extract(source, pkg_dir, tag)
    shutil.copy2(REDIRECT, pkg_dir / REDIRECT.name)
    for alias, target in GOPATH_ALIASES.items():
        link = gopath / "src" / alias
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(target)
    binary = workdir / "client.test"
    proc = subprocess.run(
        [tc.go, "test", "-c", "-o", str(binary), "."],
        cwd=pkg_dir,
        env=go_env(gopath),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BuildError(f"go test -c ({tc.version}) failed:\n{proc.stdout}{proc.stderr}")
    return binary


def package_dir(workdir: Path) -> Path:
    return workdir / "gopath" / "src" / PACKAGE
