"""The etcd backend's settings, checked and resolved from the metadata plugin's config.

``[plugins."io.containerd.metadata.v1.berthd"]`` with ``backend = "etcd"``
takes ``endpoints`` (``http[s]://host:port``, or ``host:port``), the TLS
files ``ca``, ``cert`` and ``key`` (PEM), ``prefix`` (default ``/berthd``),
``node`` (default the host name), ``dial_timeout``, ``request_timeout``,
``lease_ttl`` (Go durations) and ``max_txn_ops`` (etcd's ``--max-txn-ops``,
default 128, etcd's own default).

What cannot work is refused here, before anything starts, with a
``FieldError`` naming the key: no endpoints, an endpoint that does not parse
or whose host name does not resolve, TLS files that are missing, unreadable,
not PEM of the right kind, or a key that is not the certificate's.  An
endpoint that resolves but has no etcd answering yet is not a config error:
the daemon starts and reports the metadata plugin unavailable until etcd
answers.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from api import errdefs
from api.goduration import parse_duration
from daemon.tomlcodec import FieldError

DEFAULT_PREFIX = "/berthd"
DEFAULT_PORT = 2379
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class Endpoint:
    scheme: str  # "http" or "https"
    host: str
    port: int

    @property
    def target(self) -> str:
        """The gRPC target (``host:port``, IPv6 literals bracketed)."""
        try:
            if ipaddress.ip_address(self.host).version == 6:
                return f"[{self.host}]:{self.port}"
        except ValueError:
            pass
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.target}"


@dataclass(frozen=True)
class TLSFiles:
    """PEM bytes; ``ca`` None means the system's roots."""

    ca: bytes | None
    cert: bytes | None
    key: bytes | None


@dataclass(frozen=True)
class EtcdSettings:
    endpoints: tuple[Endpoint, ...]
    tls: TLSFiles | None
    prefix: str
    node: str
    dial_timeout: float
    request_timeout: float
    lease_ttl: int
    max_txn_ops: int


def parse_endpoint(text: str, tls: bool) -> Endpoint:
    """``http[s]://host[:port]`` or ``host[:port]``; ValueError saying what is wrong."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty endpoint")
    if "://" not in raw:
        raw = ("https://" if tls else "http://") + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{text!r}: scheme must be http or https")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{text!r}: an endpoint is scheme://host:port, nothing more")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"{text!r}: invalid port") from None
    host = parts.hostname or ""
    if not host:
        raise ValueError(f"{text!r}: no host")
    return Endpoint(parts.scheme, host, port)


def _resolve(ep: Endpoint) -> None:
    try:
        socket.getaddrinfo(ep.host, ep.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise ValueError(f"{ep}: host {ep.host!r} does not resolve ({e})") from None


def _read(key: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise FieldError(key, f"cannot read {path}: {e.strerror or e}") from None


def _tls(ca: str, cert: str, key: str) -> TLSFiles | None:
    if not (ca or cert or key):
        return None
    if cert and not key:
        raise FieldError("key", "cert is set but key is not (a client certificate needs its key)")
    if key and not cert:
        raise FieldError("cert", "key is set but cert is not")
    ca_pem = _read("ca", ca) if ca else None
    cert_pem = _read("cert", cert) if cert else None
    key_pem = _read("key", key) if key else None
    if ca_pem is not None:
        try:
            ssl.create_default_context().load_verify_locations(cadata=ca_pem.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError, ValueError) as e:
            raise FieldError("ca", f"{ca} holds no PEM CA certificate: {e}") from None
    if cert_pem is not None:
        try:
            ssl.create_default_context().load_verify_locations(cadata=cert_pem.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError, ValueError) as e:
            raise FieldError("cert", f"{cert} holds no PEM certificate: {e}") from None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as e:
            raise FieldError("key", f"{key} is not the private key of {cert}: {e}") from None
    return TLSFiles(ca_pem, cert_pem, key_pem)


def _duration(key: str, text: str, minimum: float) -> float:
    try:
        value = parse_duration(text)
    except errdefs.InvalidArgument as e:
        raise FieldError(key, e.message) from None
    if value < minimum:
        raise FieldError(key, f"{text!r} is too short (at least {minimum:g}s)")
    return value


def resolve(
    *,
    endpoints: Sequence[str],
    ca: str,
    cert: str,
    key: str,
    prefix: str,
    node: str,
    dial_timeout: str,
    request_timeout: str,
    lease_ttl: str,
    max_txn_ops: int,
) -> EtcdSettings:
    """The checked settings; FieldError naming the first key that cannot work."""
    tls = _tls(ca, cert, key)
    if not endpoints:
        raise FieldError("endpoints", 'backend "etcd" needs at least one etcd endpoint')
    eps: list[Endpoint] = []
    for text in endpoints:
        try:
            ep = parse_endpoint(text, tls is not None)
            _resolve(ep)
        except ValueError as e:
            raise FieldError("endpoints", str(e)) from None
        eps.append(ep)
    schemes = {ep.scheme for ep in eps}
    if len(schemes) > 1:
        raise FieldError("endpoints", "mixes http:// and https:// endpoints")
    if tls is not None and schemes == {"http"}:
        raise FieldError("endpoints", "TLS files are set but the endpoints are http://")
    if schemes == {"https"} and tls is None:
        tls = TLSFiles(None, None, None)
    if not prefix.startswith("/") or prefix.rstrip("/") == "":
        raise FieldError("prefix", f"{prefix!r} must be an absolute key prefix such as /berthd")
    node = node or socket.gethostname()
    if not _NODE_NAME.match(node):
        raise FieldError("node", f"{node!r}: letters, digits, '.', '_' and '-' only (max 63)")
    if max_txn_ops < 16:
        raise FieldError("max_txn_ops", f"{max_txn_ops} is too small (at least 16)")
    return EtcdSettings(
        endpoints=tuple(eps),
        tls=tls,
        prefix=prefix.rstrip("/"),
        node=node,
        dial_timeout=_duration("dial_timeout", dial_timeout, 0.1),
        request_timeout=_duration("request_timeout", request_timeout, 0.1),
        lease_ttl=max(2, round(_duration("lease_ttl", lease_ttl, 2.0))),
        max_txn_ops=max_txn_ops,
    )
