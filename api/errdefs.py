"""Typed errors shared by every backend, servicer and client.

The classes mirror containerd's errdefs: the class *is* part of the protocol
(AlreadyExists from a remote Prepare, NotImplemented from a differ change what
callers do).  This module imports nothing of gRPC so backends can raise these
freely; ``api.errgrpc`` is the only place they are turned into status codes
and back.

``str(err)`` follows containerd's convention of "<context>: <class text>", so
a message that crossed a process boundary reads the same on both sides.
"""

from __future__ import annotations

from typing import ClassVar


class ErrdefsError(Exception):
    """Base of the typed errors. ``kind`` is containerd's class text."""

    kind: ClassVar[str] = "unknown"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        if not self.message or self.message == self.kind:
            return self.kind
        return f"{self.message}: {self.kind}"


class Unknown(ErrdefsError):
    kind = "unknown"


class InvalidArgument(ErrdefsError):
    kind = "invalid argument"


class NotFound(ErrdefsError):
    kind = "not found"


class AlreadyExists(ErrdefsError):
    kind = "already exists"


class PermissionDenied(ErrdefsError):
    kind = "permission denied"


class ResourceExhausted(ErrdefsError):
    kind = "resource exhausted"


class FailedPrecondition(ErrdefsError):
    kind = "failed precondition"


class Conflict(FailedPrecondition):
    """A concurrent change won; travels as FailedPrecondition on the wire."""

    kind = "conflict"


class NotModified(FailedPrecondition):
    """Nothing to do; travels as FailedPrecondition on the wire."""

    kind = "not modified"


class Aborted(ErrdefsError):
    kind = "aborted"


class OutOfRange(ErrdefsError):
    kind = "out of range"


# Named after containerd's class; use it qualified (``errdefs.NotImplemented``)
# so the builtin constant stays visible in the importing module.
class NotImplemented(ErrdefsError):
    kind = "not implemented"


class Internal(ErrdefsError):
    kind = "internal"


class Unavailable(ErrdefsError):
    kind = "unavailable"


class DataLoss(ErrdefsError):
    kind = "data loss"


class Unauthenticated(ErrdefsError):
    kind = "unauthenticated"


class Canceled(ErrdefsError):
    """The caller went away (Go's context.Canceled)."""

    kind = "context canceled"


class DeadlineExceeded(ErrdefsError):
    """The caller's deadline passed (Go's context.DeadlineExceeded)."""

    kind = "context deadline exceeded"


ALL_CLASSES: tuple[type[ErrdefsError], ...] = (
    Unknown,
    InvalidArgument,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Conflict,
    NotModified,
    Aborted,
    OutOfRange,
    NotImplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
    Canceled,
    DeadlineExceeded,
)
