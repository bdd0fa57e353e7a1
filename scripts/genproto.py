"""Regenerate the Python modules for every .proto under api/.

Usage: python scripts/genproto.py [OUTDIR]

Proto files import each other by repository-relative path
("api/containerd/types/descriptor.proto"), so the generated modules land beside
their sources and import as ``api.containerd.types.descriptor_pb2``.  With an
OUTDIR the same tree is written there instead; the staleness test compares the
two byte for byte.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def proto_files(root: Path = ROOT) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "api").rglob("*.proto"))


def generate(outdir: Path) -> None:
    import os

    import grpc_tools
    from grpc_tools import protoc

    # protoc finds its mypy plugins on PATH; they live beside the interpreter.
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")

    include = Path(grpc_tools.__file__).parent / "_proto"
    files = proto_files()
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={outdir}",
        f"--grpc_python_out={outdir}",
        f"--mypy_out={outdir}",
        f"--mypy_grpc_out={outdir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Every directory holding generated modules is a regular package, so
    # setuptools and mypy find them.
    for f in files:
        d = outdir / Path(f).parent
        while d != outdir:
            init = d / "__init__.py"
            if not init.exists():
                init.write_text("")
            d = d.parent


def main() -> None:
    outdir = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT
    outdir.mkdir(parents=True, exist_ok=True)
    generate(outdir)


if __name__ == "__main__":
    main()
