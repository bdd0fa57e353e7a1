"""Throw-away TLS material for tests, made with the ``openssl`` command line."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support import need_binary


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_key: Path  # a key that belongs to no certificate here


def _run(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    need_binary("openssl")
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca = d / "ca.key", d / "ca.pem"
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
         "-out", str(ca), "-days", "2", "-subj", "/CN=berthd-test-ca")  # fmt: skip

    def issue(name: str, ext: str) -> tuple[Path, Path]:
        key, csr, cert, extfile = (d / f"{name}{s}" for s in (".key", ".csr", ".pem", ".ext"))
        extfile.write_text(ext)
        _run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", f"/CN={name}")  # fmt: skip
        _run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", "2",
             "-extfile", str(extfile))  # fmt: skip
        return cert, key

    server = issue(
        "server",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    client = issue("client", "extendedKeyUsage=clientAuth\n")
    other = d / "other.key"
    _run("genrsa", "-out", str(other), "2048")
    return Pki(ca, server[0], server[1], client[0], client[1], other)
