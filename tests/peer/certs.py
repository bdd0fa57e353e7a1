"""A throwaway cluster CA and node certificates, made by ``openssl`` in a temp dir.

Nothing is committed: each test session makes its own keys.  Node
certificates carry the serverAuth and clientAuth usages (a node serves its
peers and dials them with one certificate) and name 127.0.0.1 and localhost.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support import need_binary


@dataclass(frozen=True)
class NodeCert:
    ca: Path
    cert: Path
    key: Path

    def toml(self) -> str:
        return f'ca = "{self.ca}"\ncert = "{self.cert}"\nkey = "{self.key}"\n'

    def pem(self) -> tuple[bytes, bytes, bytes]:
        """(ca, cert, key) bytes."""
        return self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class CertAuthority:
    """A CA under ``dir``; ``issue(name)`` makes a node certificate signed by it."""

    def __init__(self, dir: Path, name: str = "berthd-test-ca") -> None:
        need_binary("openssl")
        self.dir = dir
        dir.mkdir(parents=True, exist_ok=True)
        self.cert = dir / "ca.pem"
        self.key = dir / "ca-key.pem"
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(self.key), "-out", str(self.cert), "-days", "2",
            "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=dir,
        )  # fmt: skip

    def issue(self, name: str, sans: str = "IP:127.0.0.1,DNS:localhost") -> NodeCert:
        key, csr, cert = (
            self.dir / f"{name}-key.pem",
            self.dir / f"{name}.csr",
            self.dir / f"{name}.pem",
        )
        ext = self.dir / f"{name}.ext"
        ext.write_text(
            f"subjectAltName={sans}\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "basicConstraints=CA:FALSE\n"
        )
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
            cwd=self.dir,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
            cwd=self.dir,
        )  # fmt: skip
        return NodeCert(self.cert, cert, key)
