"""Typed errors <-> google.rpc.Code integers, with no RPC library attached.

Both RPC edges build on this table: ``api.errgrpc`` (grpc.StatusCode) and
``api.ttrpc`` (google.rpc.Status carried in ttrpc responses).  The mapping
follows containerd's errgrpc: Conflict and NotModified travel as
FAILED_PRECONDITION and are recovered on the receiving side from the message
suffix; cancellation and deadlines map to CANCELLED and DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio

from api import errdefs

# google.rpc.Code values (google/rpc/code.proto); identical to grpc's codes.
OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
ALREADY_EXISTS = 6
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
ABORTED = 10
OUT_OF_RANGE = 11
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
DATA_LOSS = 15
UNAUTHENTICATED = 16

TO_CODE: dict[type[errdefs.ErrdefsError], int] = {
    errdefs.InvalidArgument: INVALID_ARGUMENT,
    errdefs.NotFound: NOT_FOUND,
    errdefs.AlreadyExists: ALREADY_EXISTS,
    errdefs.PermissionDenied: PERMISSION_DENIED,
    errdefs.ResourceExhausted: RESOURCE_EXHAUSTED,
    errdefs.FailedPrecondition: FAILED_PRECONDITION,
    errdefs.Conflict: FAILED_PRECONDITION,
    errdefs.NotModified: FAILED_PRECONDITION,
    errdefs.Aborted: ABORTED,
    errdefs.OutOfRange: OUT_OF_RANGE,
    errdefs.NotImplemented: UNIMPLEMENTED,
    errdefs.Internal: INTERNAL,
    errdefs.Unavailable: UNAVAILABLE,
    errdefs.DataLoss: DATA_LOSS,
    errdefs.Unauthenticated: UNAUTHENTICATED,
    errdefs.Canceled: CANCELLED,
    errdefs.DeadlineExceeded: DEADLINE_EXCEEDED,
    errdefs.Unknown: UNKNOWN,
}

FROM_CODE: dict[int, type[errdefs.ErrdefsError]] = {
    INVALID_ARGUMENT: errdefs.InvalidArgument,
    NOT_FOUND: errdefs.NotFound,
    ALREADY_EXISTS: errdefs.AlreadyExists,
    PERMISSION_DENIED: errdefs.PermissionDenied,
    RESOURCE_EXHAUSTED: errdefs.ResourceExhausted,
    FAILED_PRECONDITION: errdefs.FailedPrecondition,
    ABORTED: errdefs.Aborted,
    OUT_OF_RANGE: errdefs.OutOfRange,
    UNIMPLEMENTED: errdefs.NotImplemented,
    INTERNAL: errdefs.Internal,
    UNAVAILABLE: errdefs.Unavailable,
    DATA_LOSS: errdefs.DataLoss,
    UNAUTHENTICATED: errdefs.Unauthenticated,
    CANCELLED: errdefs.Canceled,
    DEADLINE_EXCEEDED: errdefs.DeadlineExceeded,
}

INTERNAL_MESSAGE = "internal error"


def to_code(exc: BaseException) -> tuple[int, str]:
    """The (code, message) a server answers for ``exc``.

    Anything that is not a typed error becomes INTERNAL with a fixed message:
    the traceback is for the server's log, never for the client.
    """
    if isinstance(exc, errdefs.ErrdefsError):
        for cls in type(exc).__mro__:
            code = TO_CODE.get(cls)
            if code is not None:
                return code, str(exc)
    if isinstance(exc, asyncio.CancelledError):
        return CANCELLED, str(errdefs.Canceled())
    if isinstance(exc, TimeoutError):
        return DEADLINE_EXCEEDED, str(errdefs.DeadlineExceeded())
    return INTERNAL, INTERNAL_MESSAGE


def _strip(desc: str, kind: str) -> str | None:
    """``desc`` without its class suffix; None when it does not carry ``kind``."""
    if desc == kind:
        return ""
    suffix = ": " + kind
    if desc.endswith(suffix):
        return desc[: -len(suffix)]
    return None


def from_code(code: int, desc: str) -> errdefs.ErrdefsError:
    """The typed error a client raises for a status it received (code != OK)."""
    cls = FROM_CODE.get(code, errdefs.Unknown)
    if cls is errdefs.FailedPrecondition:
        for special in (errdefs.Conflict, errdefs.NotModified):
            if _strip(desc, special.kind) is not None:
                cls = special
                break
    stripped = _strip(desc, cls.kind)
    return cls(desc if stripped is None else stripped)
