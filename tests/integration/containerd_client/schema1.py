"""Signed Docker schema 1 manifests, for a registry that verifies the signature.

docker-registry accepts a schema 1 manifest only with a valid libtrust JWS
("pretty signature"): the manifest JSON with a ``signatures`` member added
before its closing brace.  Each signature's protected header records how
much of the document is the signed payload (``formatLength``) and the text
that followed it (``formatTail``), so a reader strips the signatures by
keeping the first ``formatLength`` bytes and appending the tail.  We sign
with RS256 through the ``openssl`` command (no Python crypto dependency).
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    pem: Path

    @classmethod
    def generate(cls, directory: Path) -> SigningKey:
        pem = directory / "schema1-key.pem"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(pem), "2048"], check=True, capture_output=True
        )
        return cls(pem)

    def jwk(self) -> dict[str, str]:
        out = subprocess.run(
            ["openssl", "rsa", "-in", str(self.pem), "-noout", "-modulus"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        modulus = bytes.fromhex(out.split("=", 1)[1])
        # genrsa's public exponent is 65537
        return {"kty": "RSA", "n": b64url(modulus), "e": b64url((65537).to_bytes(3, "big"))}

    def sign(self, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 over SHA-256 (JWS "RS256")."""
        with tempfile.NamedTemporaryFile() as f:
            f.write(data)
            f.flush()
            return subprocess.run(
                ["openssl", "dgst", "-sha256", "-sign", str(self.pem), f.name],
                check=True,
                capture_output=True,
            ).stdout


def sign(manifest: dict[str, object], key: SigningKey) -> tuple[bytes, bytes]:
    """``manifest`` signed; returns (signed document, canonical payload).

    The registry names a schema 1 manifest by the digest of the canonical
    payload (the document without its signatures).
    """
    canonical = json.dumps(manifest, indent=3).encode()
    end = canonical.rstrip().rfind(b"}")
    length = len(canonical[:end].rstrip())
    tail = canonical[length:]
    protected = b64url(
        json.dumps(
            {
                "formatLength": length,
                "formatTail": b64url(tail),
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        ).encode()
    )
    signature = key.sign(f"{protected}.{b64url(canonical)}".encode())
    block = [
        {
            "header": {"jwk": key.jwk(), "alg": "RS256"},
            "signature": b64url(signature),
            "protected": protected,
        }
    ]
    signed = canonical[:length] + b',\n   "signatures": ' + json.dumps(block).encode() + tail
    return signed, canonical
