"""The two places a typed error crosses gRPC.

``to_status`` is used at a servicer's edge (the server interceptor in
``services.harness``); ``from_rpc_error`` and ``translate`` in clients.  The
mapping itself (containerd's errgrpc rules) lives in ``api.errcodes``, shared
with the ttrpc edge.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from api import errcodes, errdefs

# grpc.StatusCode members carry their google.rpc.Code integer as value[0].
_BY_INT: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}

INTERNAL_MESSAGE = errcodes.INTERNAL_MESSAGE


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status a servicer answers for ``exc`` (see ``errcodes.to_code``)."""
    code, message = errcodes.to_code(exc)
    return _BY_INT[code], message


def from_status(code: grpc.StatusCode, desc: str) -> errdefs.ErrdefsError:
    """The typed error a client raises for a status it received."""
    value = code.value[0] if isinstance(code, grpc.StatusCode) else errcodes.UNKNOWN
    return errcodes.from_code(value, desc)


def from_rpc_error(exc: grpc.RpcError) -> errdefs.ErrdefsError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return from_status(code, details or "")


@contextmanager
def translate(context: str = "") -> Iterator[None]:
    """Turn an RpcError raised inside the block into its typed error.

    ``context`` (e.g. "proxy snapshotter berth at /run/x.sock") is prefixed to
    Unavailable errors so the caller learns which peer is down.
    """
    try:
        yield
    except grpc.RpcError as e:
        err = from_rpc_error(e)
        if context and isinstance(err, errdefs.Unavailable):
            err = errdefs.Unavailable(f"{context}: {err.message}" if err.message else context)
        raise err from None
