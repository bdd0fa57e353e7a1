"""Command-line plumbing shared by the plugin entry points and the daemon.

Errors reach a user as one line (``prog: error: ...``); the traceback only
with ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from api.errdefs import ErrdefsError
from services.harness import logs, loop, memory
from services.harness.server import ServerConfig

log = logging.getLogger(__name__)


def add_common_arguments(parser: argparse.ArgumentParser, default_address: str) -> None:
    parser.add_argument("--address", "-a", default=default_address, help="unix socket to serve on")
    parser.add_argument(
        "--metrics-address", default=None, help="HOST:PORT to serve /v1/metrics on (off if unset)"
    )
    parser.add_argument(
        "--log-level", default="info", choices=sorted(logs.LEVELS), help="log level"
    )
    parser.add_argument("--log-format", default="text", choices=logs.FORMATS)
    parser.add_argument("--socket-uid", type=int, default=-1, help="owner uid of the socket")
    parser.add_argument("--socket-gid", type=int, default=-1, help="owner gid of the socket")
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="seconds in-flight calls get to finish on SIGTERM",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on fatal errors")


def server_config(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        address=args.address,
        metrics_address=args.metrics_address,
        uid=args.socket_uid,
        gid=args.socket_gid,
        grace=args.shutdown_timeout,
    )


def run(
    prog: str,
    parser: argparse.ArgumentParser,
    main: Callable[[argparse.Namespace], Coroutine[Any, Any, None]],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse, configure logging, run ``main`` on a fresh loop; map errors to exit codes."""
    memory.tune()
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_format, prog)
    return report_errors(prog, args.debug, lambda: loop.run(main(args)))


def report_errors(
    prog: str,
    debug: bool,
    body: Callable[[], int | None],
    expected: tuple[type[BaseException], ...] = (),
) -> int:
    """Run ``body``; answer its exit code, or 1 with one line on stderr for an
    error (a traceback only with ``debug``), 130 on Ctrl-C.

    Typed errors, OS errors, bad values and ``expected`` are the user's to
    fix and print as they are; anything else is flagged as unexpected.
    """
    user_errors: tuple[type[BaseException], ...] = (ErrdefsError, OSError, ValueError, *expected)
    try:
        return body() or 0
    except KeyboardInterrupt:
        return 130
    except user_errors as e:
        if debug:
            log.exception("%s failed", prog)
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        if debug:
            raise
        print(
            f"{prog}: error: unexpected {type(e).__name__}: {e} (--debug for details)",
            file=sys.stderr,
        )
        return 1
