"""Connections to proxy plugins that survive the plugins going away.

A ``ProxyConnection`` owns the channel to one proxy plugin's socket and a
monitor task.  The monitor dials with exponential backoff (a cheap
socket probe, then a fresh channel that must become ready and, when the
plugin has a health service, report SERVING), marks the plugin up, then
watches the health stream (or the channel state) until the plugin goes away
and starts dialing again.  A plugin that is down never blocks a caller:
``ready_channel`` answers Unavailable at once, naming the plugin and its
socket, unless the socket accepts again, in which case it wakes the monitor
and waits briefly for the fresh channel, so a plugin is used again as soon as
it is back.

The relay methods (``unary``, ``unary_stream``, ``stream_unary``,
``stream_stream``) forward raw serialized messages with the caller's metadata
and deadline, translate status codes into typed errors (so the daemon's edge
re-answers them) and record calls and latency per plugin and method.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from api import errdefs, errgrpc
from api.grpc.health.v1 import health_pb2, health_pb2_grpc
from daemon.metrics import DaemonMetrics
from daemon.proxychannel import ConnectionChannel
from services.harness.metrics import GO_CODE_NAMES
from services.harness.server import CHANNEL_OPTIONS

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]

# A plugin that hangs (stopped, deadlocked) keeps its socket open and answers
# nothing.  While it is up the monitor asks its health service every
# PROBE_INTERVAL seconds; PROBE_MISSES answers in a row not given within
# PROBE_TIMEOUT mark it hung: its channel is dropped, calls in flight on it
# fail with Unavailable naming it, and new calls fail fast until it answers
# again (within about 5 s in all).  (grpc-core's HTTP/2 keepalive pings are
# not used: on these unix-socket channels they never fired, and the server
# options that admit them broke large writes.)
PROBE_INTERVAL = 0.5
PROBE_TIMEOUT = 2.0
PROBE_MISSES = 2

# How long closing waits for the monitor and its health streams to end.
CLOSE_WAIT = 2.0

# Keep grpc-core's own reconnect backoff short: we replace the channel when
# the plugin returns, but a channel that merely went idle reconnects itself.
_CHANNEL_OPTIONS = (
    *CHANNEL_OPTIONS,
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)

# Request metadata that belongs to the hop, not to the call.
_HOP_HEADERS = ("user-agent", "te", "content-type", "grpc-")


class _DialFailed(Exception):
    pass


def forwardable(metadata: Any) -> tuple[tuple[str, str | bytes], ...]:
    out = []
    for key, value in metadata or ():
        k = key.lower()
        if k.startswith(":") or any(k == h or k.startswith(h) for h in _HOP_HEADERS):
            continue
        out.append((k, value))
    return tuple(out)


def _raw(data: bytes) -> bytes:
    """Messages pass through the daemon serialized, as they came."""
    return data


def _code_name(exc: BaseException | None) -> str:
    if exc is None:
        return GO_CODE_NAMES["OK"]
    if isinstance(exc, GeneratorExit):  # the caller stopped reading a stream
        return GO_CODE_NAMES["CANCELLED"]
    return GO_CODE_NAMES[errgrpc.to_status(exc)[0].name]


class ProxyConnection:
    """One proxy plugin's channel, health and relays."""

    def __init__(
        self,
        name: str,
        plugin_type: str,
        address: str,
        metrics: DaemonMetrics | None = None,
        *,
        dial_timeout: float = 2.0,
        min_backoff: float = 0.05,
        max_backoff: float = 0.5,
        recover_wait: float = 0.8,
    ) -> None:
        self.name = name
        self.plugin_type = plugin_type
        self.address = address
        self.metrics = metrics
        self.dial_timeout = dial_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.recover_wait = recover_wait
        self._channel: grpc.aio.Channel | None = None
        self._up = asyncio.Event()
        self._wake = asyncio.Event()
        self._monitor: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[bool], None]] = []
        self._closed = False
        self._failures = 0
        # Channels dropped because the plugin stopped answering: calls that
        # were on them report that, not a bare cancellation.
        self._hung: weakref.WeakSet[grpc.aio.Channel] = weakref.WeakSet()
        self.channel = ConnectionChannel(self)
        if metrics is not None:
            metrics.proxy_up.labels(name, plugin_type).set(0)

    @property
    def describe(self) -> str:
        return f"proxy plugin {self.name} ({self.plugin_type}) at {self.address}"

    @property
    def up(self) -> bool:
        return self._up.is_set()

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(up)`` at every up/down transition."""
        self._listeners.append(listener)

    def wake(self) -> None:
        """Dial now (e.g. the plugin just reported ready) rather than after the backoff."""
        self._wake.set()

    def start(self) -> None:
        if self._monitor is None:
            self._monitor = asyncio.create_task(self._run(), name=f"proxy-{self.name}")

    async def until_up(self) -> None:
        await self._up.wait()

    async def wait_up(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), seconds)
        return self.up

    async def close(self) -> None:
        self._closed = True
        if self._monitor is not None:
            self._monitor.cancel()
            # Closing the channel ends the monitor's health streams: grpc-aio
            # can swallow a cancellation that lands in a stream read, so the
            # monitor is never waited for without a bound either.
            if self._channel is not None:
                await self._channel.close(grace=0)
            done, _ = await asyncio.wait({self._monitor}, timeout=CLOSE_WAIT)
            if not done:
                log.warning("%s: monitor did not stop", self.describe)
        self._set_up(False)
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    # --- state ---------------------------------------------------------------

    def _set_up(self, up: bool) -> None:
        if up == self.up:
            return
        if up:
            self._up.set()
            self._failures = 0
            log.info("%s is up", self.describe)
        else:
            self._up.clear()
            if not self._closed:
                log.warning("%s is down", self.describe)
        if self.metrics is not None:
            self.metrics.proxy_up.labels(self.name, self.plugin_type).set(1 if up else 0)
        for listener in self._listeners:
            try:
                listener(up)
            except Exception:
                log.exception("%s: state listener failed", self.describe)

    async def _probe(self, seconds: float) -> bool:
        """Does something accept on the socket?  (No gRPC.)"""
        try:
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.address), seconds)
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True

    async def accepting(self) -> bool:
        """Does the plugin's socket accept connections (whether or not it answers)?"""
        return await self._probe(0.2)

    async def ready_channel(self) -> grpc.aio.Channel:
        """The live channel; Unavailable at once when the plugin is down."""
        if not self.up and not self._closed and await self._probe(0.2):
            # It may be back while the monitor naps: wake it and give the
            # fresh dial a moment rather than failing a call we could serve.
            self._wake.set()
            await self.wait_up(self.recover_wait)
        channel = self._channel
        if not self.up or channel is None:
            raise errdefs.Unavailable(f"{self.describe}: not reachable")
        return channel

    # --- the monitor -----------------------------------------------------------

    async def _nap(self, seconds: float) -> None:
        """The pause between dials: cut short by a caller that found the socket answering."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _dial(self) -> None:
        """Dial until it works: after the n-th failure in a row, wait
        ``min_backoff * 2**(n-1)`` seconds, at most ``max_backoff``."""
        attempt = 0
        while True:
            try:
                await self._dial_once()
                return
            except (_DialFailed, grpc.RpcError, TimeoutError, OSError) as e:
                attempt += 1
                self._failures += 1
                if self._failures in (1, 10) or self._failures % 100 == 0:
                    log.info("%s: dial attempt %d failed: %s", self.describe, self._failures, e)
            backoff = self.min_backoff * 2 ** min(attempt - 1, 32)
            await self._nap(min(backoff, self.max_backoff))

    async def _dial_once(self) -> None:
        if not await self._probe(self.dial_timeout):
            raise _DialFailed("socket does not accept connections")
        channel = grpc.aio.insecure_channel("unix://" + self.address, options=_CHANNEL_OPTIONS)
        try:
            await asyncio.wait_for(channel.channel_ready(), self.dial_timeout)
            health = health_pb2_grpc.HealthStub(channel)
            try:
                resp = await health.Check(
                    health_pb2.HealthCheckRequest(), timeout=self.dial_timeout
                )
                if resp.status != health_pb2.HealthCheckResponse.SERVING:
                    raise _DialFailed("health check: not serving")
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise _DialFailed(f"health check: {e.code().name}") from None
        except BaseException:
            await channel.close()
            raise
        old, self._channel = self._channel, channel
        if old is not None:
            await old.close(grace=0)

    def dropped_as_hung(self, channel: grpc.aio.Channel | None) -> errdefs.Unavailable | None:
        """The error for a call cut short because ``channel``'s plugin hung."""
        if channel is not None and channel in self._hung:
            return errdefs.Unavailable(f"{self.describe}: stopped answering (hung?)")
        return None

    async def _probe_health(self, channel: grpc.aio.Channel) -> None:
        """Return once the plugin has missed PROBE_MISSES health checks in a row."""
        stub = health_pb2_grpc.HealthStub(channel)
        misses = 0
        while misses < PROBE_MISSES:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=PROBE_TIMEOUT)
                misses = 0
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                    await asyncio.Event().wait()  # a foreign plugin: the watch decides
                if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    misses += 1
                else:
                    return  # broken: the watch sees it too
        log.warning(
            "%s: no answer to %d health checks in a row; dropping its connection",
            self.describe,
            PROBE_MISSES,
        )
        self._hung.add(channel)

    async def _follow(self, channel: grpc.aio.Channel) -> None:
        """Return when the plugin stops serving, its channel breaks or it hangs."""
        tasks = [
            asyncio.ensure_future(self._watch_health(channel)),
            asyncio.ensure_future(self._probe_health(channel)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            # Bounded: a cancellation grpc-aio swallowed must not hold us.
            await asyncio.wait(tasks, timeout=CLOSE_WAIT)
        if channel in self._hung and self._channel is channel:
            self._channel = None
            await channel.close(grace=0)

    async def _watch_health(self, channel: grpc.aio.Channel) -> None:
        """Return when the plugin stops serving (or its channel breaks)."""
        stub = health_pb2_grpc.HealthStub(channel)
        call = stub.Watch(health_pb2.HealthCheckRequest())
        try:
            async for resp in call:
                if resp.status != health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                return
            # No health service (a foreign plugin): follow the channel state.
            state = channel.get_state()
            while state == grpc.ChannelConnectivity.READY:
                await channel.wait_for_state_change(state)
                state = channel.get_state()
        finally:
            # A plugin draining on SIGTERM waits for open calls: end ours now.
            call.cancel()

    async def _run(self) -> None:
        while not self._closed:
            await self._dial()
            channel = self._channel
            assert channel is not None
            self._set_up(True)
            self._watch = asyncio.create_task(self._follow(channel))
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            if self._monitor is not None and self._monitor.cancelling():
                raise asyncio.CancelledError
            self._set_up(False)

    def _suspect(self) -> None:
        """A relayed call saw UNAVAILABLE: if the channel broke, go dial again."""
        channel = self._channel
        if channel is None or channel.get_state() == grpc.ChannelConnectivity.READY:
            return
        self._set_up(False)
        if self._watch is not None:
            self._watch.cancel()

    # --- relays ------------------------------------------------------------------

    def record(self, method: str, start: float, exc: BaseException | None) -> None:
        """Count a call to the plugin (metrics); an Unavailable one makes us re-check the link."""
        if isinstance(exc, errdefs.Unavailable):
            self._suspect()
        if self.metrics is not None:
            short = method.rsplit("/", 1)[-1]
            self.metrics.proxy_calls.labels(self.name, short, _code_name(exc)).inc()
            self.metrics.proxy_latency.labels(self.name, short).observe(time.perf_counter() - start)

    # The relays ride on ``self.channel`` (a ConnectionChannel), the same path
    # the metadata layer's typed clients take: fail fast when down, redial,
    # per-plugin metrics. Here status codes also become typed errors.

    def _call_options(self, ctx: Context) -> dict[str, Any]:
        return {
            "metadata": forwardable(ctx.invocation_metadata()),
            "timeout": ctx.time_remaining(),
        }

    async def unary(self, method: str, request: bytes, ctx: Context) -> bytes:
        with errgrpc.translate(self.describe):
            resp: bytes = await self.channel.unary_unary(method, _raw, _raw)(
                request, **self._call_options(ctx)
            )
        return resp

    async def unary_stream(self, method: str, request: bytes, ctx: Context) -> AsyncIterator[bytes]:
        call = self.channel.unary_stream(method, _raw, _raw)(request, **self._call_options(ctx))
        try:
            with errgrpc.translate(self.describe):
                async for msg in call:
                    yield msg
        finally:
            call.cancel()

    async def stream_unary(
        self, method: str, requests: AsyncIterator[bytes], ctx: Context
    ) -> bytes:
        with errgrpc.translate(self.describe):
            resp: bytes = await self.channel.stream_unary(method, _raw, _raw)(
                requests, **self._call_options(ctx)
            )
        return resp

    async def stream_stream(
        self, method: str, requests: AsyncIterator[bytes], ctx: Context
    ) -> AsyncIterator[bytes]:
        call = self.channel.stream_stream(method, _raw, _raw)(requests, **self._call_options(ctx))
        try:
            with errgrpc.translate(self.describe):
                async for msg in call:
                    yield msg
        finally:
            call.cancel()
