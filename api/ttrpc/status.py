"""The two places a typed error crosses ttrpc.

``to_status`` is the server's edge (a handler's exception becomes the
google.rpc.Status of the response), ``from_status`` the client's (a status
becomes the typed error the caller sees).  Both use ``api.errcodes``, the
table gRPC's edge uses too, so an error reads the same over either protocol.
"""

from __future__ import annotations

import logging

from api import errcodes, errdefs
from api.google.rpc.status_pb2 import Status

log = logging.getLogger(__name__)


class ConnectionClosed(errdefs.Unavailable):
    """The connection is gone (ttrpc's ErrClosed): every pending call on it fails with this.

    A subclass of Unavailable so callers that only care about "peer down" need
    not know it; a caller that must tell a dead connection from a server that
    answered Unavailable (a shim that exited vs. one that refuses) can.
    """


def to_status(exc: BaseException, where: str) -> Status:
    """The status answered for a handler's exception; ``where`` names the method for the log.

    Typed errors keep their class and message; anything else is logged here
    with its traceback and answered as INTERNAL "internal error".
    """
    code, message = errcodes.to_code(exc)
    if code == errcodes.INTERNAL and not isinstance(exc, errdefs.ErrdefsError):
        log.error("ttrpc %s failed", where, exc_info=exc)
    return Status(code=code, message=message)


def from_status(status: Status) -> errdefs.ErrdefsError:
    """The typed error for a non-OK status received from the peer."""
    return errcodes.from_code(status.code, status.message)
