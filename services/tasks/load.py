"""Reloading the shims of a previous daemon run (containerd's runtime/v2 shim_load.go).

For each namespace directory in the state dir, for each bundle in it:

- an empty or unreadable bundle is removed;
- the runtime comes from ``shim-binary-path`` (or the manager's
  ``runtime_lookup``); with none, the bundle is unmounted and removed;
- if the ``address`` connects and the shim answers Connect, the task is
  adopted; a live shim that holds no task (the daemon died between shim
  start and Create, containerd#6860) is shut down and its bundle removed;
- otherwise the shim is dead: its binary's ``delete`` runs and the bundle is
  removed.  containerd publishes no events here (the task was never in its
  list), and neither does this.

Hidden entries (``.id``, left by an interrupted atomic removal) are removed,
and work directories in ``<root>/<namespace>`` that no loaded task owns are
removed last, as containerd's cleanupWorkDirs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from api import errdefs, identifiers
from services.tasks import bundle as bundles
from services.tasks.command import parse_start_response
from services.tasks.connection import Connection
from services.tasks.shim import ShimTask
from services.tasks.shimlog import ShimLog

if TYPE_CHECKING:
    from services.tasks.manager import ShimManager

__all__ = ["load_existing"]

log = logging.getLogger(__name__)


def _listdir(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []


def _valid(name: str) -> bool:
    try:
        identifiers.validate(name)
    except errdefs.InvalidArgument:
        return False
    return True


async def load_existing(m: ShimManager) -> None:
    """Load every namespace's shims; a failure in one bundle never stops the rest."""
    for nsd in await asyncio.to_thread(_listdir, m.state):
        ns = nsd.name
        if not nsd.is_dir(follow_symlinks=False) or ns.startswith("."):
            continue
        if not _valid(ns):
            log.warning("skipping state directory %s: not a valid namespace", nsd.path)
            continue
        for entry in await asyncio.to_thread(_listdir, nsd.path):
            try:
                await _load_entry(m, ns, entry)
            except Exception:
                log.exception("loading task %s/%s", ns, entry.name)
        await asyncio.to_thread(_cleanup_work_dirs, m, ns)


async def _load_entry(m: ShimManager, ns: str, entry: os.DirEntry[str]) -> None:
    id = entry.name
    if id.startswith("."):
        log.info("removing leftover %s", entry.path)
        try:
            await asyncio.to_thread(bundles.remove_tree, entry.path)
        except OSError as e:
            log.error("failed to remove leftover %s: %s", entry.path, e)
        return
    if not entry.is_dir(follow_symlinks=False) or not _valid(id):
        log.warning("skipping %s: not a bundle", entry.path)
        return
    b = m.bundle(ns, id)
    try:
        names = await asyncio.to_thread(os.listdir, b.path)
    except OSError as e:
        log.error("read bundle %s: %s", b.path, e)
        names = []
    if not names:
        await m.remove_bundle(b)
        return

    runtime = await asyncio.to_thread(_read_text, b.file(bundles.SHIM_BINARY_FILE))
    if not runtime and m.runtime_lookup is not None:
        try:
            runtime = await m.runtime_lookup(ns, id) or ""
        except errdefs.ErrdefsError as e:
            log.error("loading container %s/%s: %s", ns, id, e)
    if not runtime:
        log.info("no runtime known for bundle %s, removing it", b.path)
        await m.remove_bundle(b)
        return
    try:
        path = m.resolver.resolve(runtime)
    except errdefs.ErrdefsError as e:
        log.error("failed to resolve runtime path for %s/%s: %s", ns, id, e)
        await m.remove_bundle(b)
        return
    binary = m.binary(path)

    shim_log = ShimLog(b.file(bundles.LOG_FILE), ns, id)
    task: ShimTask | None = None
    try:
        shim_log.open()
        raw = await asyncio.to_thread(_read_bytes, b.file(bundles.ADDRESS_FILE))
        if not raw:
            raise errdefs.NotFound(f"no shim address in {b.path}")
        async with asyncio.timeout(m.timeouts.load):
            conn: Connection = await m.dial(parse_start_response(raw))
            task = m.new_task(b, conn, path)
            await task.connect()
    except (errdefs.ErrdefsError, OSError, TimeoutError) as e:
        log.info("shim of %s/%s is gone (%s), cleaning up", ns, id, e)
        if task is not None:
            task.detach()
            await task.close()
        shim_log.close()
        await m.run_delete_command(binary, b)
        await m.remove_bundle(b)
        return

    try:
        await task.state()
    except errdefs.NotFound:
        log.info("cleaning leaked shim process of %s/%s", ns, id)
        await m.stop_shim(task, shim_log, binary)
        return
    except errdefs.ErrdefsError as e:
        # Alive but unwell: keep it, a client can still delete it.
        log.warning("state of reloaded task %s/%s: %s", ns, id, e)
    m.adopt(task, shim_log, binary)
    log.info("reloaded task %s/%s (pid %d)", ns, id, task.pid)


def _read_text(path: str) -> str:
    return _read_bytes(path).decode(errors="surrogateescape")


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def _cleanup_work_dirs(m: ShimManager, ns: str) -> None:
    loaded = {t.id for t in m.list(ns)}
    for entry in _listdir(os.path.join(m.root, ns)):
        if entry.name in loaded:
            continue
        # A reboot empties the state dir but keeps the work dirs.
        try:
            bundles.remove_tree(entry.path)
        except OSError as e:
            log.error("cleanup working dir %s: %s", entry.path, e)
