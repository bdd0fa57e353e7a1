"""Serve any ``Snapshotter`` as a containerd proxy plugin.

A custom snapshotter is a class with the methods of
``services.snapshotter.snapshotter.Snapshotter``; this module turns it into a
process containerd (or berthd) can use through ``[proxy_plugins]``::

    from services.snapshotter import sdk

    class MySnapshotter:
        ...  # stat, update, usage, mounts, prepare, view, commit, remove, walk, cleanup, close

    if __name__ == "__main__":
        raise SystemExit(sdk.run(lambda args: MySnapshotter(args.root), prog="my-snapshotter"))

``run`` gives the process the standard flags (``--root``, ``--address``,
``--metrics-address``, ``--log-level``, ...), a unix socket, health,
``/v1/metrics`` with the gRPC and snapshotter families, graceful SIGTERM
handling, and error reporting without tracebacks.  ``serve`` does the same
inside an already running asyncio program; ``create_server`` only builds the
server (for embedding and tests).  ``create_named_server`` builds one
serving several snapshotters on one socket, each request going to the one
it names.

Raise the typed errors of ``api.errdefs`` from the methods: they reach the
client as the matching gRPC status (AlreadyExists from Prepare, NotFound,
FailedPrecondition, ...).  Any other exception becomes "internal error".
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry

from api.containerd.services.snapshots.v1 import snapshots_pb2_grpc
from services.harness import cli
from services.harness.server import PluginServer, ServerConfig
from services.snapshotter.metrics import (
    Counts,
    Instrumented,
    SnapshotterMetrics,
    counts_by_walking,
)
from services.snapshotter.servicer import SERVICE_NAME, SnapshotsServicer
from services.snapshotter.snapshotter import Kind, Snapshotter

Factory = Callable[[argparse.Namespace], Snapshotter | Awaitable[Snapshotter]]


@runtime_checkable
class CountsByKind(Protocol):
    """A snapshotter that can count its snapshots cheaply and synchronously."""

    def counts_by_kind(self) -> Mapping[Kind, int]: ...


@runtime_checkable
class HasMetrics(Protocol):
    """A snapshotter with metrics of its own, registered on the process's registry."""

    def register_metrics(self, registry: CollectorRegistry) -> None: ...


def _instrumented(
    snapshotter: Snapshotter,
    server: PluginServer,
    metrics: SnapshotterMetrics,
    name: str,
    counts: Counts | None,
) -> Snapshotter:
    """``snapshotter`` timed and counted under ``name``, closed when ``server`` stops."""
    if counts is None:
        if isinstance(snapshotter, CountsByKind):
            counts = snapshotter.counts_by_kind
        else:
            counts = counts_by_walking(snapshotter, asyncio.get_running_loop())
    if isinstance(snapshotter, HasMetrics):
        snapshotter.register_metrics(server.registry)
    server.on_stop.append(snapshotter.close)
    return Instrumented(snapshotter, metrics.add(name, counts))


def _serving(server: PluginServer, servicer: SnapshotsServicer) -> PluginServer:
    server.add_service(
        SERVICE_NAME, lambda s: snapshots_pb2_grpc.add_SnapshotsServicer_to_server(servicer, s)
    )
    return server


def create_server(
    snapshotter: Snapshotter,
    config: ServerConfig,
    *,
    name: str = "snapshotter",
    process_name: str = "snapshotter",
    counts: Counts | None = None,
) -> PluginServer:
    """A PluginServer serving ``snapshotter`` (call from inside the event loop).

    Every request is served by ``snapshotter`` whatever snapshotter it names
    (containerd sends its proxy plugin's name, which the process need not
    know).  ``name`` labels the snapshotter's metrics.  Snapshot counts come
    from ``counts``, else from the snapshotter's own ``counts_by_kind``, else
    from walking it at scrape time.  A snapshotter with ``register_metrics``
    gets the registry for families of its own.  The snapshotter is closed
    when the server stops.
    """
    server = PluginServer(process_name, config)
    metrics = SnapshotterMetrics(server.registry)
    served = _instrumented(snapshotter, server, metrics, name, counts)
    return _serving(server, SnapshotsServicer.single(served))


def create_named_server(
    snapshotters: Mapping[str, Snapshotter],
    config: ServerConfig,
    *,
    process_name: str = "snapshotter",
) -> PluginServer:
    """A PluginServer serving several snapshotters on one socket, each under its name.

    Each request goes to the snapshotter its ``snapshotter`` field names; a
    missing or unknown name is InvalidArgument, as from containerd's own
    Snapshots service.  So every ``[proxy_plugins]`` entry using the socket
    must be named after one of them.  Metrics, counts, ``register_metrics``
    and closing are as for ``create_server``, with each name as the label
    (snapshotters registering families of their own must not collide).
    """
    if not snapshotters:
        raise ValueError("create_named_server needs at least one snapshotter")
    server = PluginServer(process_name, config)
    metrics = SnapshotterMetrics(server.registry)
    served = {
        name: _instrumented(sn, server, metrics, name, None) for name, sn in snapshotters.items()
    }
    return _serving(server, SnapshotsServicer.by_name(served))


async def serve(
    snapshotter: Snapshotter,
    config: ServerConfig | str,
    *,
    name: str = "snapshotter",
    process_name: str = "snapshotter",
) -> None:
    """Serve ``snapshotter`` on ``config`` (or a socket path) until SIGTERM/SIGINT."""
    if isinstance(config, str):
        config = ServerConfig(address=config)
    server = create_server(snapshotter, config, name=name, process_name=process_name)
    await server.serve()


def argument_parser(
    prog: str, *, default_address: str, default_root: str | None = None
) -> argparse.ArgumentParser:
    """The standard flags of a snapshotter plugin; add your own before calling ``run``."""
    parser = argparse.ArgumentParser(prog=prog, description=f"{prog}: a snapshotter proxy plugin")
    cli.add_common_arguments(parser, default_address=default_address)
    if default_root is None:
        parser.add_argument("--root", required=True, help="directory for the snapshots")
    else:
        parser.add_argument(
            "--root", default=default_root, help=f"directory for the snapshots ({default_root})"
        )
    return parser


def run(
    factory: Factory,
    *,
    prog: str = "snapshotter",
    name: str | None = None,
    default_address: str = "/run/snapshotter.sock",
    default_root: str | None = None,
    parser: argparse.ArgumentParser | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse the command line, build the snapshotter with ``factory(args)``, serve it.

    Returns the process exit code.  ``factory`` may be a coroutine function.
    ``parser`` defaults to ``argument_parser(prog, ...)``; pass your own
    (built from it) to add flags.
    """
    if parser is None:
        parser = argument_parser(prog, default_address=default_address, default_root=default_root)

    async def main(args: argparse.Namespace) -> None:
        made = factory(args)
        snapshotter = await made if inspect.isawaitable(made) else made
        await serve(snapshotter, cli.server_config(args), name=name or prog, process_name=prog)

    return cli.run(prog, parser, main, argv)
