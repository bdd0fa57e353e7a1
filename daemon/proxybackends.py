"""The typed backends a ``[proxy_plugins]`` entry's init returns.

As containerd's proxy inits return ``ssproxy.NewSnapshotter``,
``csproxy.NewContentStore`` and ``diffproxy.NewDiffApplier`` over their
connection, ours return the project's own proxy clients
(``ProxyContentStore``, ``ProxySnapshotter``, ``ProxyDiffer``) built on the
daemon's ``ProxyConnection`` to the plugin's socket (its ``ConnectionChannel``):
a plugin that is down fails its calls at once with Unavailable naming it, it
is used again as soon as it is back, and every call is counted per plugin.

Each backend also offers the daemon capabilities of the plugin behind it:
it closes its connection at shutdown (``Closeable``), reports readiness
while its supervised process starts (``Readiness``) and exposes the
connection's up/down state (``Liveness``) for per-service health.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable

from daemon.proxy import ProxyConnection
from daemon.supervisor import Child, Supervisor
from services.content.proxy import ProxyContentStore
from services.diff.proxy import ProxyDiffer
from services.snapshotter.proxy import ProxySnapshotter

# A supervised plugin whose socket accepts connections but that has not
# answered its health checks for this long is hung: it is killed and
# restarted like one that crashed.
HUNG_AFTER = 10.0


class ProxyPlugin:
    """The daemon-facing side of a proxy backend: its connection and process.

    Listed first among a backend's bases, so its ``close`` (the connection's)
    is the one the daemon calls, not the proxy client's no-op.
    """

    def __init__(
        self, conn: ProxyConnection, child: Child | None, supervisor: Supervisor | None = None
    ) -> None:
        self.connection = conn
        self.child = child
        self._supervisor = supervisor
        self._watchdog: asyncio.Task[None] | None = None
        if child is not None:
            child.on_ready.append(conn.wake)
        if child is not None and supervisor is not None:
            self._watchdog = asyncio.create_task(
                self._watch(child, supervisor), name=f"watchdog-{conn.name}"
            )

    async def _watch(self, child: Child, supervisor: Supervisor) -> None:
        conn = self.connection
        down = asyncio.Event()
        conn.on_change(lambda up: down.clear() if up else down.set())
        await conn.until_up()
        while True:
            await down.wait()
            await asyncio.sleep(HUNG_AFTER)
            pid = child.pid
            if conn.up or pid is None or time.monotonic() - child.started_at < HUNG_AFTER:
                continue  # back, exited (restarted by the supervisor) or just restarted
            if await conn.accepting():
                supervisor.kill(
                    child, f"accepts connections but has not answered for {HUNG_AFTER:g}s"
                )
                await conn.until_up()

    @property
    def describe(self) -> str:
        return self.connection.describe

    @property
    def up(self) -> bool:
        return self.connection.up

    def on_change(self, listener: Callable[[bool], None]) -> None:
        self.connection.on_change(listener)

    def _process(self) -> Child | None:
        """The supervised process serving this plugin's socket, if any.

        An entry without a command may share the socket of one with a command
        (one process serving several snapshotters): it waits for that process.
        Only the owning entry watches it for hangs.
        """
        if self.child is not None or self._supervisor is None:
            return self.child
        address = os.path.abspath(self.connection.address)
        for child in self._supervisor.children:
            if child.spec.socket and os.path.abspath(child.spec.socket) == address:
                return child
        return None

    async def wait_ready(self) -> bool:
        """Up; or False as soon as the supervised process serving it exits while starting.

        A plugin no process of the daemon serves is not waited for: it may be
        started later by its own unit, and its calls fail fast until then.
        """
        conn, child = self.connection, self._process()
        if conn.up or child is None:
            return conn.up
        up = asyncio.ensure_future(conn.until_up())
        exited = asyncio.ensure_future(child.exited.wait())
        try:
            await asyncio.wait((up, exited), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (up, exited):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        return conn.up

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        await self.connection.close()


class ProxiedContentStore(ProxyPlugin, ProxyContentStore):
    def __init__(
        self, conn: ProxyConnection, child: Child | None, supervisor: Supervisor | None = None
    ) -> None:
        ProxyContentStore.__init__(self, conn.channel, name=conn.describe)  # type: ignore[arg-type]
        ProxyPlugin.__init__(self, conn, child, supervisor)


class ProxiedSnapshotter(ProxyPlugin, ProxySnapshotter):
    def __init__(
        self, conn: ProxyConnection, child: Child | None, supervisor: Supervisor | None = None
    ) -> None:
        ProxySnapshotter.__init__(
            self,
            conn.channel,  # type: ignore[arg-type]
            conn.name,
            context=conn.describe,
        )
        ProxyPlugin.__init__(self, conn, child, supervisor)


class ProxiedDiffer(ProxyPlugin, ProxyDiffer):
    def __init__(
        self, conn: ProxyConnection, child: Child | None, supervisor: Supervisor | None = None
    ) -> None:
        ProxyDiffer.__init__(self, conn.channel, name=conn.describe)  # type: ignore[arg-type]
        ProxyPlugin.__init__(self, conn, child, supervisor)
