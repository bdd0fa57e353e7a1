"""The two places a typed error crosses gRPC.

``to_status`` is used at a servicer's edge (the server interceptor in
``services.harness``); ``from_rpc_error`` and ``translate`` in clients.  The
mapping follows containerd's errgrpc: Conflict and NotModified travel as
FailedPrecondition and are recovered on the client side from the message
suffix; cancellation and deadlines map to CANCELLED and DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from api import errdefs

_TO_CODE: dict[type[errdefs.ErrdefsError], grpc.StatusCode] = {
    errdefs.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errdefs.NotFound: grpc.StatusCode.NOT_FOUND,
    errdefs.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errdefs.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errdefs.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errdefs.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errdefs.Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    errdefs.NotModified: grpc.StatusCode.FAILED_PRECONDITION,
    errdefs.Aborted: grpc.StatusCode.ABORTED,
    errdefs.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errdefs.NotImplemented: grpc.StatusCode.UNIMPLEMENTED,
    errdefs.Internal: grpc.StatusCode.INTERNAL,
    errdefs.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errdefs.DataLoss: grpc.StatusCode.DATA_LOSS,
    errdefs.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errdefs.Canceled: grpc.StatusCode.CANCELLED,
    errdefs.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errdefs.Unknown: grpc.StatusCode.UNKNOWN,
}

_FROM_CODE: dict[grpc.StatusCode, type[errdefs.ErrdefsError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errdefs.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errdefs.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errdefs.AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: errdefs.PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errdefs.ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: errdefs.FailedPrecondition,
    grpc.StatusCode.ABORTED: errdefs.Aborted,
    grpc.StatusCode.OUT_OF_RANGE: errdefs.OutOfRange,
    grpc.StatusCode.UNIMPLEMENTED: errdefs.NotImplemented,
    grpc.StatusCode.INTERNAL: errdefs.Internal,
    grpc.StatusCode.UNAVAILABLE: errdefs.Unavailable,
    grpc.StatusCode.DATA_LOSS: errdefs.DataLoss,
    grpc.StatusCode.UNAUTHENTICATED: errdefs.Unauthenticated,
    grpc.StatusCode.CANCELLED: errdefs.Canceled,
    grpc.StatusCode.DEADLINE_EXCEEDED: errdefs.DeadlineExceeded,
}

INTERNAL_MESSAGE = "internal error"


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status a servicer answers for ``exc``.

    Anything that is not a typed error becomes INTERNAL with a fixed message:
    the traceback is for the server's log, never for the client.
    """
    if isinstance(exc, errdefs.ErrdefsError):
        for cls in type(exc).__mro__:
            code = _TO_CODE.get(cls)
            if code is not None:
                return code, str(exc)
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED, str(errdefs.Canceled())
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(errdefs.DeadlineExceeded())
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


def _strip(desc: str, kind: str) -> str | None:
    """``desc`` without its class suffix; None when it does not carry ``kind``."""
    if desc == kind:
        return ""
    suffix = ": " + kind
    if desc.endswith(suffix):
        return desc[: -len(suffix)]
    return None


def from_status(code: grpc.StatusCode, desc: str) -> errdefs.ErrdefsError:
    """The typed error a client raises for a status it received."""
    cls = _FROM_CODE.get(code, errdefs.Unknown)
    if cls is errdefs.FailedPrecondition:
        for special in (errdefs.Conflict, errdefs.NotModified):
            if _strip(desc, special.kind) is not None:
                cls = special
                break
    stripped = _strip(desc, cls.kind)
    return cls(desc if stripped is None else stripped)


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
