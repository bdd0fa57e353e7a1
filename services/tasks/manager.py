"""ShimManager: tasks run by runtime v2 shims (containerd's runtime/v2 manager.go + shim.go).

One shim per task.  ``create`` lays out the bundle, runs the shim's
``start``, connects to it and sends Create; any failure undoes all of it.
``delete`` asks the shim to delete the task and exit, then removes the
bundle.  ``load`` (after a daemon restart) reconnects to live shims and
cleans up after dead ones (``load.py``).  ``close`` only disconnects: shims
outlive the daemon.

A shim whose connection drops on its own is dead: the manager runs the
shim binary's ``delete`` command (which kills and deletes the container and
unmounts its rootfs), removes the bundle, publishes the TaskExit and
TaskDelete events containerd publishes then, and keeps the task listed as
STOPPED with that exit until it is deleted (containerd forgets it at once;
keeping it lets a client that was waiting still read the status).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from api import errdefs
from api.containerd.events import task_pb2 as events
from api.types import Publisher
from services.tasks import bundle as bundles
from services.tasks.binary import RuntimeResolver
from services.tasks.command import ShimBinary, parse_start_response
from services.tasks.connection import Connection, dial
from services.tasks.runtime import Process, Runtime, Task
from services.tasks.shim import ShimProcess, ShimTask
from services.tasks.shimlog import ShimLog
from services.tasks.types import CreateOpts, Exit

__all__ = ["RuntimeLookup", "ShimManager", "Timeouts"]

log = logging.getLogger(__name__)

# How a load finds the runtime of a bundle that has no shim-binary-path
# (containerd asks its container store): (namespace, id) -> runtime or None.
RuntimeLookup = Callable[[str, str], Awaitable[str | None]]
Dialer = Callable[..., Awaitable[Connection]]

# The exit status recorded when the dead-shim cleanup could not learn one.
UNKNOWN_EXIT_STATUS = 255


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each shim step (containerd's io.containerd.timeout.shim.*)."""

    start: float = 60.0
    connect: float = 100.0
    load: float = 5.0
    cleanup: float = 5.0
    shutdown: float = 3.0


@dataclass
class _Shim:
    task: ShimTask
    log: ShimLog
    binary: ShimBinary
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cleanup: asyncio.Task[None] | None = None


class ShimManager:
    """The runtime v2 backend; implements :class:`services.tasks.runtime.Runtime`.

    ``root`` holds persistent per-task work directories, ``state`` the
    bundles (a tmpfs like /run in production).  ``grpc_address`` and
    ``ttrpc_address`` are the daemon's sockets, handed to each shim
    (events come back on the ttrpc one); ``publish_binary`` is the daemon's
    own executable (shims run ``<it> publish`` to send events, and shim
    binaries installed beside it are found).  ``publisher`` receives the
    events the manager itself publishes for dead shims.
    """

    def __init__(
        self,
        root: str,
        state: str,
        grpc_address: str,
        ttrpc_address: str,
        publish_binary: str,
        publisher: Publisher | None = None,
        *,
        sched_core: bool = False,
        debug: bool = False,
        runtime_lookup: RuntimeLookup | None = None,
        resolver: RuntimeResolver | None = None,
        timeouts: Timeouts = Timeouts(),
        dialer: Dialer = dial,
    ) -> None:
        self.root = os.path.abspath(root)
        self.state = os.path.abspath(state)
        self.grpc_address = grpc_address
        self.ttrpc_address = ttrpc_address
        self.publish_binary = publish_binary
        self.publisher = publisher
        self.sched_core = sched_core
        self.debug = debug
        self.runtime_lookup = runtime_lookup
        self.resolver = resolver or RuntimeResolver(
            beside=os.path.dirname(os.path.abspath(publish_binary))
        )
        self.timeouts = timeouts
        self.dial = dialer
        self._shims: dict[tuple[str, str], _Shim] = {}
        self._creating: set[tuple[str, str]] = set()
        self._cleanups: set[asyncio.Task[None]] = set()
        for d in (self.root, self.state):
            os.makedirs(d, mode=0o711, exist_ok=True)

    # -- helpers shared with load.py -----------------------------------------

    def binary(self, path: str) -> ShimBinary:
        return ShimBinary(
            path=path,
            grpc_address=self.grpc_address,
            ttrpc_address=self.ttrpc_address,
            publish_binary=self.publish_binary,
            sched_core=self.sched_core,
            debug=self.debug,
        )

    def bundle(self, namespace: str, id: str) -> bundles.Bundle:
        return bundles.load_bundle(self.root, self.state, namespace, id)

    def adopt(self, task: ShimTask, shim_log: ShimLog, binary: ShimBinary) -> None:
        """Register a connected shim's task (create and load end here)."""
        self._shims[(task.namespace, task.id)] = _Shim(task, shim_log, binary)
        if task.lost:
            # Its connection dropped before it was registered.
            self._shim_lost(task)

    def new_task(self, b: bundles.Bundle, conn: Connection, runtime: str) -> ShimTask:
        return ShimTask(b, conn, runtime, on_lost=self._shim_lost)

    async def remove_bundle(self, b: bundles.Bundle) -> None:
        """Remove ``b``, logging (not raising) a failure."""
        try:
            await asyncio.to_thread(bundles.delete_bundle, b)
        except errdefs.ErrdefsError as e:
            log.error("failed to delete bundle %s: %s", b.path, e)

    async def run_delete_command(self, binary: ShimBinary, b: bundles.Bundle) -> Exit | None:
        """The shim binary's ``delete`` for ``b``; None (logged) when it fails."""
        log.info("cleaning up dead shim %s/%s", b.namespace, b.id)
        try:
            async with asyncio.timeout(self.timeouts.cleanup):
                return await binary.delete(b)
        except TimeoutError:
            log.warning("shim delete for %s/%s timed out", b.namespace, b.id)
            return None
        except errdefs.ErrdefsError as e:
            log.warning("failed to clean up after shim %s/%s: %s", b.namespace, b.id, e)
            return None

    async def stop_shim(self, task: ShimTask, shim_log: ShimLog, binary: ShimBinary) -> None:
        """Tear a shim down whatever state it is in: Delete, Shutdown, close,
        the binary's ``delete`` (containerd runs it from the close callback),
        bundle removal.  Never raises."""
        task.detach()
        with contextlib.suppress(errdefs.ErrdefsError, TimeoutError):
            async with asyncio.timeout(self.timeouts.cleanup):
                await task.delete_process("")
        await self._shutdown(task)
        await task.close()
        await self.run_delete_command(binary, task.bundle_info)
        shim_log.close()
        await self.remove_bundle(task.bundle_info)

    async def _shutdown(self, task: ShimTask) -> None:
        try:
            async with asyncio.timeout(self.timeouts.shutdown):
                await task.shutdown()
        except (errdefs.ErrdefsError, TimeoutError) as e:
            log.error("failed to shutdown shim task %s/%s: %s", task.namespace, task.id, e)

    # -- Runtime ----------------------------------------------------------

    async def create(self, namespace: str, id: str, opts: CreateOpts) -> ShimTask:
        b = self.bundle(namespace, id)
        key = (namespace, id)
        if key in self._shims or key in self._creating:
            raise errdefs.AlreadyExists(f"task {id}")
        self._creating.add(key)
        try:
            try:
                path = self.resolver.resolve(opts.runtime)
            except errdefs.ErrdefsError as e:
                raise type(e)(
                    f"failed to start shim: failed to resolve runtime path: {e.message}"
                ) from None
            binary = self.binary(path)
            b = await asyncio.to_thread(
                bundles.new_bundle, self.root, self.state, namespace, id, opts.spec
            )
            return await self._start(b, binary, opts)
        finally:
            self._creating.discard(key)

    async def _start(self, b: bundles.Bundle, binary: ShimBinary, opts: CreateOpts) -> ShimTask:
        shim_log = ShimLog(b.file(bundles.LOG_FILE), b.namespace, b.id)
        task: ShimTask | None = None
        started = False
        try:
            try:
                shim_log.open()
            except OSError as e:
                raise errdefs.Unknown(f"failed to start shim: open shim log pipe: {e}") from None
            # Written before the shim exists: a daemon that dies while the shim
            # starts still finds (and cleans up) the shim at the next load.
            await asyncio.to_thread(
                bundles.write_file_atomic,
                b.file(bundles.SHIM_BINARY_FILE),
                binary.path.encode(),
                0o600,
            )
            started = True  # from here on a shim may exist
            try:
                async with asyncio.timeout(self.timeouts.start):
                    params = await binary.start(b, opts.options)
            except TimeoutError:
                raise errdefs.DeadlineExceeded(
                    f"failed to start shim: start of {b.id} timed out"
                ) from None
            except errdefs.ErrdefsError as e:
                raise type(e)(f"failed to start shim: start failed: {e.message}") from None
            # The address lets a restarted daemon reconnect (the runc shim
            # writes the same itself; other shims may not).
            await asyncio.to_thread(
                bundles.write_file_atomic, b.file(bundles.ADDRESS_FILE), params.encode(), 0o644
            )
            try:
                async with asyncio.timeout(self.timeouts.connect):
                    conn = await self.dial(params)
            except TimeoutError:
                raise errdefs.DeadlineExceeded(
                    f"failed to start shim: connect to {params.address} timed out"
                ) from None
            except errdefs.ErrdefsError as e:
                raise type(e)(f"failed to start shim: {e.message}") from None
            task = self.new_task(b, conn, binary.path)
            try:
                await task.create(opts)
            except errdefs.ErrdefsError as e:
                raise type(e)(f"failed to create shim task: {e.message}") from None
        except BaseException:
            await asyncio.shield(self._undo(b, binary, shim_log, task, started))
            raise
        self.adopt(task, shim_log, binary)
        return task

    async def _undo(
        self,
        b: bundles.Bundle,
        binary: ShimBinary,
        shim_log: ShimLog,
        task: ShimTask | None,
        started: bool,
    ) -> None:
        log.info("undoing failed create of %s/%s", b.namespace, b.id)
        if task is not None:
            await self.stop_shim(task, shim_log, binary)
            return
        if started:
            await self._shutdown_by_address(b)
            await self.run_delete_command(binary, b)
        shim_log.close()
        await self.remove_bundle(b)

    async def _shutdown_by_address(self, b: bundles.Bundle) -> None:
        """Ask a shim we never got to talk to (start timed out, dial failed) to exit.

        The runc shim writes its address before it prints it; without one
        there is nothing to reach and the shim, if any, is left alone.
        """
        try:
            raw = await asyncio.to_thread(_read_file, b.file(bundles.ADDRESS_FILE))
            async with asyncio.timeout(self.timeouts.shutdown):
                conn = await self.dial(parse_start_response(raw))
                task = ShimTask(b, conn, "")
                task.detach()
                try:
                    await task.shutdown(now=True)
                finally:
                    await task.close()
        except (OSError, TimeoutError, errdefs.ErrdefsError) as e:
            log.info("no shim to shut down for %s/%s: %s", b.namespace, b.id, e)

    def get(self, namespace: str, id: str) -> ShimTask:
        try:
            return self._shims[(namespace, id)].task
        except KeyError:
            raise errdefs.NotFound(f"task {id}") from None

    def list(self, namespace: str | None = None) -> list[ShimTask]:
        return [
            s.task for (ns, _), s in self._shims.items() if namespace is None or ns == namespace
        ]

    async def delete(self, namespace: str, id: str) -> Exit:
        key = (namespace, id)
        shim = self._shims.get(key)
        if shim is None:
            raise errdefs.NotFound(f"task {id}")
        async with shim.lock:
            if self._shims.get(key) is not shim:
                raise errdefs.NotFound(f"task {id}")
            return await self._delete(key, shim)

    async def _delete(self, key: tuple[str, str], shim: _Shim) -> Exit:
        task = shim.task
        if task.lost:
            exit = await task.wait_dead()
            del self._shims[key]
            return exit
        shim_error: errdefs.ErrdefsError | None = None
        try:
            exit = await task.delete_process("")
        except errdefs.NotFound as e:
            # The shim does not know the task: still tear everything down.
            shim_error = e
        except errdefs.Unavailable:
            if not task.gone:
                raise
            # The shim died under the Delete: its cleanup decides the exit.
            exit = await task.wait_dead()
            del self._shims[key]
            return exit
        task.detach()
        await self._shutdown(task)
        await task.close()
        shim.log.close()
        await self.remove_bundle(task.bundle_info)
        del self._shims[key]
        if shim_error is not None:
            raise shim_error
        return exit

    async def close(self) -> None:
        for shim in list(self._shims.values()):
            shim.task.detach()
            await shim.task.close()
            shim.log.close()
        self._shims.clear()
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)

    async def load(self) -> None:
        from services.tasks.load import load_existing

        await load_existing(self)

    # -- dead shims ---------------------------------------------------------

    def _shim_lost(self, task: ShimTask) -> None:
        shim = self._shims.get((task.namespace, task.id))
        if shim is None or shim.task is not task:
            # Not registered (yet): create's or load's error path cleans up.
            return
        cleanup = asyncio.get_running_loop().create_task(self._cleanup_dead(shim))
        shim.cleanup = cleanup
        self._cleanups.add(cleanup)
        cleanup.add_done_callback(self._cleanups.discard)

    async def _cleanup_dead(self, shim: _Shim) -> None:
        task = shim.task
        log.warning("cleaning up after shim disconnected: %s/%s", task.namespace, task.id)
        exit = None
        try:
            exit = await self.run_delete_command(shim.binary, task.bundle_info)
            shim.log.close()
            await task.close()
            await self.remove_bundle(task.bundle_info)
        finally:
            if exit is None:
                exit = Exit(pid=0, status=UNKNOWN_EXIT_STATUS, exited_at=datetime.now(UTC))
            task.mark_dead(exit)
        await self._publish_dead(task, exit)

    async def _publish_dead(self, task: ShimTask, exit: Exit) -> None:
        if self.publisher is None:
            return
        exit_event = events.TaskExit(
            container_id=task.id, id=task.id, pid=exit.pid, exit_status=exit.status
        )
        exit_event.exited_at.FromDatetime(exit.exited_at)
        delete_event = events.TaskDelete(
            container_id=task.id, pid=exit.pid, exit_status=exit.status
        )
        delete_event.exited_at.FromDatetime(exit.exited_at)
        for event, topic in ((exit_event, "/tasks/exit"), (delete_event, "/tasks/delete")):
            try:
                await self.publisher.publish(task.namespace, event, topic)
            except Exception as e:
                log.error("publish %s for %s/%s: %s", topic, task.namespace, task.id, e)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


if TYPE_CHECKING:
    # mypy proves the classes satisfy the contracts the Tasks service codes against.
    def _contracts(m: ShimManager, t: ShimTask, p: ShimProcess) -> tuple[Runtime, Task, Process]:
        return m, t, p
