"""When to collect garbage (containerd's gc/scheduler).

A collection runs

- right after a deletion (``deletion_threshold`` 0) or after that many deletions;
- after ``mutation_threshold`` mutations of any kind;
- when asked (``schedule_and_wait``: ``--sync`` deletes), at once;
- shortly after start-up (``startup_delay``), counted from when the
  backends answer (``start(ready=...)``), so orphans a crash left are
  collected as soon as the plugins are up rather than at the next trigger.

``pause_threshold`` bounds the share of time spent collecting: after each
collection the next one is held back so that the average collection time is
at most that fraction of the interval.  Triggers arriving meanwhile are
folded into the next run, and callers waiting on ``schedule_and_wait`` all
get its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from daemon.metadata.collector import GCStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchedulerConfig:
    """``[plugins."io.containerd.gc.v1.scheduler"]``, containerd's keys and defaults."""

    pause_threshold: float = 0.02
    deletion_threshold: int = 0
    mutation_threshold: int = 100
    schedule_delay: float = 0.0  # seconds
    startup_delay: float = 0.1  # seconds


class GCFailed(RuntimeError):
    pass


class GCScheduler:
    def __init__(
        self,
        collect: Callable[[], Awaitable[GCStats]],
        config: SchedulerConfig | None = None,
        on_collected: Callable[[GCStats | None, float], None] | None = None,
    ) -> None:
        self._collect = collect
        self.configure(config or SchedulerConfig())
        self._on_collected = on_collected
        self._events: asyncio.Queue[tuple[float, bool, bool]] = asyncio.Queue()
        self._waiters: list[asyncio.Future[GCStats]] = []
        self._task: asyncio.Task[None] | None = None
        self._startup: asyncio.Task[None] | None = None
        self._current: asyncio.Future[GCStats] | None = None

    def configure(self, cfg: SchedulerConfig) -> None:
        """Set the thresholds (out-of-range values are clamped, as containerd does)."""
        self.pause_threshold = min(max(cfg.pause_threshold, 0.0), 0.5)
        self.deletion_threshold = cfg.deletion_threshold
        self.mutation_threshold = max(cfg.mutation_threshold, 0)
        self.schedule_delay = max(cfg.schedule_delay, 0.0)
        self.startup_delay = max(cfg.startup_delay, 0.0)

    def start(self, ready: Callable[[], Awaitable[None]] | None = None) -> None:
        """Start scheduling; with ``ready``, the start-up collection waits for it."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(ready is None), name="gc-scheduler")
            if ready is not None:
                self._startup = asyncio.create_task(self._first(ready), name="gc-startup")

    async def _first(self, ready: Callable[[], Awaitable[None]]) -> None:
        await ready()
        await asyncio.sleep(self.startup_delay)
        try:
            stats = await self.schedule_and_wait()
        except GCFailed as e:
            log.warning("start-up garbage collection: %s", e)
            return
        log.info(
            "start-up garbage collection done: %d backend object(s) removed in %.3fs",
            stats.backend_removed,
            stats.elapsed,
        )

    async def stop(self) -> None:
        """Stop scheduling; a collection under way is let finish (it may be
        deleting in a backend, which must not be closed under it)."""
        if self._startup is not None:
            self._startup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._startup
            self._startup = None
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._current is not None:
            with contextlib.suppress(Exception):
                await self._current
            self._current = None
        for w in self._waiters:
            if not w.done():
                w.set_exception(GCFailed("garbage collector stopped"))
        self._waiters.clear()

    def mutation_callback(self, dirty: bool) -> None:
        """For ``MetadataDB.register_mutation_callback``."""
        self._events.put_nowait((time.monotonic(), True, dirty))

    async def schedule_and_wait(self) -> GCStats:
        """Collect as soon as possible and return that collection's stats.

        Raises GCFailed when the collection failed or the scheduler stopped.
        """
        fut: asyncio.Future[GCStats] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._events.put_nowait((time.monotonic(), False, False))
        return await fut

    async def _run(self, timed_start: bool = True) -> None:
        interval = 1.0
        gc_time = 0.0
        collections = 0
        triggered = False
        deletions = mutations = 0
        last: float | None = None
        next_at: float | None = None
        if timed_start and self.startup_delay > 0:
            next_at = time.monotonic() + self.startup_delay

        def schedule(delay: float) -> float:
            return time.monotonic() + delay

        while True:
            timeout = None if next_at is None else max(next_at - time.monotonic(), 0.0)
            try:
                # asyncio.timeout, unlike wait_for on 3.11, never drops an
                # event that arrives just as the timer fires.
                async with asyncio.timeout(timeout):
                    ts, mutation, dirty = await self._events.get()
            except TimeoutError:
                if (
                    not triggered
                    and last is not None
                    and deletions == 0
                    and (self.mutation_threshold == 0 or mutations < self.mutation_threshold)
                ):
                    next_at = schedule(interval)
                    continue
            else:
                if last is not None and ts < last:
                    continue  # already covered by the last collection
                if dirty:
                    deletions += 1
                if mutation:
                    mutations += 1
                else:
                    triggered = True
                if (
                    triggered
                    or (self.deletion_threshold > 0 and deletions >= self.deletion_threshold)
                    or (
                        next_at is None
                        and (
                            (self.deletion_threshold == 0 and deletions > 0)
                            or (
                                self.mutation_threshold > 0 and mutations >= self.mutation_threshold
                            )
                        )
                    )
                ):
                    soon = schedule(self.schedule_delay)
                    if next_at is None or next_at > soon:
                        next_at = soon
                continue

            waiters, self._waiters = self._waiters, []
            started = time.monotonic()
            self._current = asyncio.ensure_future(self._collect())
            try:
                stats = await asyncio.shield(self._current)
            except Exception as e:
                log.error("garbage collection failed: %s", e, exc_info=True)
                last = time.monotonic()
                next_at = schedule(interval + 1.0)
                for w in waiters:
                    if not w.done():
                        w.set_exception(GCFailed(f"garbage collection failed: {e}"))
                if self._on_collected:
                    self._on_collected(None, last - started)
                continue
            last = started
            elapsed = time.monotonic() - started
            gc_time += elapsed
            collections += 1
            # A backend that could not be cleaned gets another try next round.
            triggered = stats.incomplete
            deletions = mutations = 0
            if self.pause_threshold > 0:
                avg = gc_time / collections
                interval = avg / self.pause_threshold - avg
            # (At most once a second while a plugin stays down.)
            next_at = schedule(max(interval, 1.0) if stats.incomplete else interval)
            for w in waiters:
                if not w.done():
                    w.set_result(stats)
            if self._on_collected:
                self._on_collected(stats, elapsed)
