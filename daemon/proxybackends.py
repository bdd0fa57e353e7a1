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
import time
from collections.abc import Callable

from daemon.proxy import ProxyConnection
from daemon.supervisor import Child, Supervisor
from services.content.proxy import ProxyContentStore
from services.diff.proxy import ProxyDiffer
from services.snapshotter.proxy import ProxySnapshotter

# A supervised plugin whose socket accepts connections but that has not
# answered (health check, keepalive) for this long is hung: it is killed and
# restarted like one that crashed.
HUNG_AFTER = 5.0


class ProxyPlugin:
    """The daemon-facing side of a proxy backend: its connection and process."""

    def __init__(
        self, conn: ProxyConnection, child: Child | None, supervisor: Supervisor | None = None
    ) -> None:
        self.connection = conn
        self.child = child
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

    async def wait_ready(self) -> bool:
        """Up; or False as soon as a supervised process exits while starting.

        A plugin the daemon does not start is not waited for: it may be
        started later by its own unit, and its calls fail fast until then.
        """
        conn, child = self.connection, self.child
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


class ProxiedContentStore(ProxyContentStore, ProxyPlugin):
    def __init__(
        self, conn: ProxyConnection, child: Child | None, supervisor: Supervisor | None = None
    ) -> None:
        ProxyContentStore.__init__(self, conn.channel, name=conn.describe)  # type: ignore[arg-type]
        ProxyPlugin.__init__(self, conn, child, supervisor)


class ProxiedSnapshotter(ProxySnapshotter, ProxyPlugin):
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


class ProxiedDiffer(ProxyDiffer, ProxyPlugin):
    def __init__(
        self, conn: ProxyConnection, child: Child | None, supervisor: Supervisor | None = None
    ) -> None:
        ProxyDiffer.__init__(self, conn.channel, name=conn.describe)  # type: ignore[arg-type]
        ProxyPlugin.__init__(self, conn, child, supervisor)
