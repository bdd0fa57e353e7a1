"""The peer plugin's settings: where it listens, what it advertises, its TLS files.

``[plugins."io.berthd.content.v1.peer"]`` takes ``peer_address``
(``HOST:PORT`` on TCP; port 0 picks a free one), ``advertise_address``
(what the other nodes dial; defaults to ``peer_address`` with the bound
port, required when it binds a wildcard address) and the cluster's TLS
files: ``ca`` (the cluster's CA, PEM), ``cert`` and ``key`` (this node's
certificate, used both to serve and to dial: it needs the serverAuth and
clientAuth usages, and a subject alternative name for the advertised host).

Peers authenticate each other with mutual TLS: a connection without a
client certificate the CA signed is refused during the handshake.  Plain
TCP is allowed only when every address is a loopback one and no TLS file is
given (a single-machine test cluster); the plugin logs a warning saying so.
What cannot work is refused before anything listens, with InvalidArgument
naming the key.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass

from api import errdefs

SECTION = 'plugins."io.berthd.content.v1.peer"'


@dataclass(frozen=True)
class PeerConfig:
    """``[plugins."io.berthd.content.v1.peer"]``; empty ``peer_address``: no peer plugin."""

    peer_address: str = ""
    advertise_address: str = ""
    ca: str = ""
    cert: str = ""
    key: str = ""


@dataclass(frozen=True)
class TLSFiles:
    """PEM bytes of the cluster CA and of this node's certificate and key."""

    ca: bytes
    cert: bytes
    key: bytes


@dataclass(frozen=True)
class PeerSettings:
    host: str
    port: int
    advertise_host: str  # "" : the bound host
    advertise_port: int  # 0 : the bound port
    tls: TLSFiles | None  # None: plain TCP on loopback

    @property
    def bind(self) -> str:
        return join_host_port(self.host, self.port)

    def advertise(self, bound_port: int) -> str:
        """The address other nodes dial, once the server bound ``bound_port``."""
        return join_host_port(self.advertise_host or self.host, self.advertise_port or bound_port)


def _bad(key: str, message: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"{SECTION}.{key}: {message}")


def split_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT``; ValueError saying what is wrong."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected [HOST]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r}: expected HOST:PORT")
        if ":" in host:
            raise ValueError(f"{text!r}: an IPv6 host goes in brackets ([::1]:PORT)")
    if not host:
        raise ValueError(f"{text!r}: no host")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{text!r}: invalid port {port_text!r}")
    return host, int(port_text)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP literal (no name resolution)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _read(key: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise _bad(key, f"cannot read {path}: {e.strerror or e}") from None


def _load_tls(cfg: PeerConfig) -> TLSFiles | None:
    given = {k: getattr(cfg, k) for k in ("ca", "cert", "key")}
    if not any(given.values()):
        return None
    for k, v in given.items():
        if not v:
            others = ", ".join(o for o, w in given.items() if w)
            raise _bad(k, f"mutual TLS needs ca, cert and key; only {others} set")
    ca = _read("ca", cfg.ca)
    cert = _read("cert", cfg.cert)
    key = _read("key", cfg.key)
    try:
        ssl.create_default_context().load_verify_locations(cadata=ca.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as e:
        raise _bad("ca", f"{cfg.ca} holds no PEM CA certificate: {e}") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_cert_chain(cfg.cert, cfg.key)
    except ssl.SSLError as e:
        raise _bad("key", f"{cfg.key} is not the private key of {cfg.cert}: {e}") from None
    except OSError as e:
        raise _bad("cert", f"{cfg.cert}: {e}") from None
    return TLSFiles(ca, cert, key)


def resolve(cfg: PeerConfig) -> PeerSettings:
    """The checked settings; InvalidArgument naming the first key that cannot work."""
    try:
        host, port = split_host_port(cfg.peer_address)
    except ValueError as e:
        raise _bad("peer_address", str(e)) from None
    adv_host, adv_port = "", 0
    if cfg.advertise_address:
        try:
            adv_host, adv_port = split_host_port(cfg.advertise_address)
        except ValueError as e:
            raise _bad("advertise_address", str(e)) from None
        if _is_wildcard(adv_host):
            raise _bad("advertise_address", f"{adv_host} cannot be dialled by other nodes")
    elif _is_wildcard(host):
        raise _bad(
            "advertise_address",
            f"peer_address binds the wildcard {host}: say which address other nodes dial",
        )
    tls = _load_tls(cfg)
    if tls is None:
        for key, h in (("peer_address", host), ("advertise_address", adv_host or host)):
            if not is_loopback(h):
                raise _bad(
                    key,
                    f"{h} is not a loopback address: peers need mutual TLS (set ca, cert and key)",
                )
    return PeerSettings(host, port, adv_host, adv_port, tls)
