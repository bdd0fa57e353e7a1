"""A ``grpc.aio.Channel`` stand-in backed by a proxy plugin's connection.

The metadata layer talks to the plugins through the typed proxy clients
(``ProxyContentStore``, ``ProxySnapshotter``), which are built on generated
stubs.  Handing those stubs a ``ConnectionChannel`` instead of a raw channel
routes every call through the daemon's ``ProxyConnection``: a call to a plugin
that is down fails at once with Unavailable naming the plugin and socket, a
plugin that comes back is used on the next call (after a redial the live
channel is picked up), and each call is counted in the per-plugin metrics.

Only the surface the stubs and proxy clients use is provided: calling a
multicallable, awaiting unary results, iterating streams, and ``write`` /
``read`` / ``done_writing`` / ``cancel`` / ``code`` / ``details`` /
``add_done_callback`` on stream calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import grpc

from api import errdefs, errgrpc


class ProxyConnection(Protocol):
    """What a ConnectionChannel needs of the connection (``daemon.proxy``'s)."""

    @property
    def describe(self) -> str:
        """The plugin and its socket, for error messages."""
        ...

    async def ready_channel(self) -> grpc.aio.Channel:
        """The live channel; Unavailable at once when the plugin is down."""
        ...

    def record(self, method: str, start: float, exc: BaseException | None) -> None:
        """Count one call to the plugin."""
        ...

    def dropped_as_hung(self, channel: grpc.aio.Channel | None) -> errdefs.Unavailable | None:
        """The error for a call cut short because ``channel``'s plugin hung."""
        ...


Serializer = Callable[[Any], bytes] | None

# A unary call the caller gave no deadline gets this one: a plugin that is
# alive but stuck on one call (health checks still answered) cannot hold
# the caller forever.  It is generous (a snapshot commit computes disk usage,
# a cleanup waits for large deletes): hangs are the health probes' to find.
# Layer apply and diff can take longer still: they get none.
DEFAULT_DEADLINE = 120.0
UNBOUNDED = frozenset(
    {"/containerd.services.diff.v1.Diff/Apply", "/containerd.services.diff.v1.Diff/Diff"}
)

# A stream whose plugin sends nothing for this long is given up on.
STREAM_STALL = 120.0


def _hung_error(
    conn: ProxyConnection, channel: grpc.aio.Channel | None, e: BaseException
) -> errdefs.Unavailable | None:
    """Unavailable when ``e`` ended a call because ``channel``'s plugin was dropped as
    hung; None when it is anything else (including the caller's own cancellation)."""
    if isinstance(e, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            return None
    elif not isinstance(e, grpc.RpcError):
        return None
    return conn.dropped_as_hung(channel)


def _stalled(conn: ProxyConnection, method: str) -> errdefs.Unavailable:
    return errdefs.Unavailable(
        f"{conn.describe}: no progress on {method.rsplit('/', 1)[-1]} for {STREAM_STALL:g}s"
    )


def _typed(exc: BaseException | None) -> BaseException | None:
    """What the metrics record: a status as its typed error."""
    if isinstance(exc, grpc.RpcError):
        return errgrpc.from_rpc_error(exc)
    return exc


class ConnectionChannel:
    def __init__(self, conn: ProxyConnection) -> None:
        self.conn = conn
        self._unary: dict[tuple[str, Serializer, Any], _UnaryUnary] = {}

    def unary_unary(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Any = None,
        **_: Any,
    ) -> _UnaryUnary:
        # Kept per method so the relays, which ask on every call, reuse it.
        key = (method, request_serializer, response_deserializer)
        mc = self._unary.get(key)
        if mc is None:
            mc = self._unary[key] = _UnaryUnary(
                self.conn, method, request_serializer, response_deserializer
            )
        return mc

    def unary_stream(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Any = None,
        **_: Any,
    ) -> _StreamFactory:
        return _StreamFactory(
            self.conn, method, "unary_stream", request_serializer, response_deserializer
        )

    def stream_unary(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Any = None,
        **_: Any,
    ) -> _StreamUnary:
        return _StreamUnary(self.conn, method, request_serializer, response_deserializer)

    def stream_stream(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Any = None,
        **_: Any,
    ) -> _StreamFactory:
        return _StreamFactory(
            self.conn, method, "stream_stream", request_serializer, response_deserializer
        )


class _Multicallable:
    def __init__(self, conn: ProxyConnection, method: str, ser: Serializer, des: Any) -> None:
        self.conn, self.method, self.ser, self.des = conn, method, ser, des


class _UnaryUnary(_Multicallable):
    # The live channel's multicallable, made once per channel rather than per call.
    _live: tuple[grpc.aio.Channel, Any] | None = None

    def __call__(self, request: Any, **kwargs: Any) -> Any:
        return self._invoke(request, kwargs)

    async def _invoke(self, request: Any, kwargs: dict[str, Any]) -> Any:
        start = time.perf_counter()
        failure: BaseException | None = None
        if kwargs.get("timeout") is None and self.method not in UNBOUNDED:
            kwargs["timeout"] = DEFAULT_DEADLINE
        channel = None
        try:
            channel = await self.conn.ready_channel()
            if self._live is None or self._live[0] is not channel:
                self._live = (channel, channel.unary_unary(self.method, self.ser, self.des))
            return await self._live[1](request, **kwargs)
        except (grpc.RpcError, asyncio.CancelledError) as e:
            # A call on a channel dropped because its plugin hung ends as a
            # local cancellation: the caller learns the plugin is unavailable.
            failure = _hung_error(self.conn, channel, e) or e
            if failure is e:
                raise
            raise failure from None
        except BaseException as e:
            failure = e
            raise
        finally:
            self.conn.record(self.method, start, _typed(failure))


class _StreamUnary(_Multicallable):
    def __call__(self, requests: Any, **kwargs: Any) -> Any:
        return self._invoke(requests, kwargs)

    async def _invoke(self, requests: Any, kwargs: dict[str, Any]) -> Any:
        start = time.perf_counter()
        failure: BaseException | None = None
        channel = None
        try:
            channel = await self.conn.ready_channel()
            return await channel.stream_unary(self.method, self.ser, self.des)(requests, **kwargs)
        except (grpc.RpcError, asyncio.CancelledError) as e:
            # A call on a channel dropped because its plugin hung ends as a
            # local cancellation: the caller learns the plugin is unavailable.
            failure = _hung_error(self.conn, channel, e) or e
            if failure is e:
                raise
            raise failure from None
        except BaseException as e:
            failure = e
            raise
        finally:
            self.conn.record(self.method, start, _typed(failure))


class _StreamFactory(_Multicallable):
    def __init__(
        self, conn: ProxyConnection, method: str, kind: str, ser: Serializer, des: Any
    ) -> None:
        super().__init__(conn, method, ser, des)
        self.kind = kind

    def __call__(self, *args: Any, **kwargs: Any) -> _LazyCall:
        def open_call(channel: grpc.aio.Channel) -> Any:
            factory = getattr(channel, self.kind)(self.method, self.ser, self.des)
            return factory(*args, **kwargs)

        return _LazyCall(self.conn, self.method, open_call)


class _LazyCall:
    """A stream call opened on first use, once the plugin's channel is known to be up."""

    def __init__(
        self, conn: ProxyConnection, method: str, open_call: Callable[[grpc.aio.Channel], Any]
    ) -> None:
        self._conn = conn
        self._method = method
        self._open = open_call
        self._call: Any = None
        self._channel: grpc.aio.Channel | None = None
        self._start = time.perf_counter()
        self._finished = False
        self._cancelled = False
        self._done_callbacks: list[Callable[[Any], None]] = []

    def _finish(self, exc: BaseException | None) -> None:
        if not self._finished:
            self._finished = True
            self._conn.record(self._method, self._start, _typed(exc))

    async def _get(self) -> Any:
        if self._call is None:
            if self._cancelled:
                raise errdefs.Canceled(f"{self._method} cancelled before it started")
            try:
                channel = await self._conn.ready_channel()
            except BaseException as e:
                self._finish(e)
                raise
            self._channel = channel
            self._call = self._open(channel)
            for callback in self._done_callbacks:
                self._call.add_done_callback(callback)
        return self._call

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        """``callback(call)`` once the call has a status (the opened grpc call is passed)."""
        if self._call is not None:
            self._call.add_done_callback(callback)
        else:
            self._done_callbacks.append(callback)

    async def code(self) -> grpc.StatusCode:
        return await (await self._get()).code()  # type: ignore[no-any-return]

    async def details(self) -> str:
        return await (await self._get()).details()  # type: ignore[no-any-return]

    def _failed(self, e: BaseException) -> BaseException:
        """What a failure of the call is to the caller (a hung plugin's cut is Unavailable)."""
        hung = _hung_error(self._conn, self._channel, e)
        if hung is not None:
            self._finish(hung)
            return hung
        self._finish(e)
        return e

    async def write(self, request: Any) -> None:
        call = await self._get()
        try:
            await call.write(request)
        except BaseException as e:
            err = self._failed(e)
            if err is e:
                raise
            raise err from None

    async def done_writing(self) -> None:
        call = await self._get()
        try:
            await call.done_writing()
        except BaseException as e:
            err = self._failed(e)
            if err is e:
                raise
            raise err from None

    async def read(self) -> Any:
        call = await self._get()
        try:
            try:
                async with asyncio.timeout(STREAM_STALL):
                    msg = await call.read()
            except TimeoutError:
                call.cancel()
                raise _stalled(self._conn, self._method) from None
        except BaseException as e:
            err = self._failed(e)
            if err is e:
                raise
            raise err from None
        if msg is grpc.aio.EOF:
            self._finish(None)
        return msg

    def cancel(self) -> bool:
        self._cancelled = True
        if self._call is not None and not self._finished:
            self._finish(errdefs.Canceled(self._method))
        return bool(self._call.cancel()) if self._call is not None else True

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        call = await self._get()
        try:
            while True:
                try:
                    async with asyncio.timeout(STREAM_STALL):
                        msg = await call.read()
                except TimeoutError:
                    call.cancel()
                    raise _stalled(self._conn, self._method) from None
                if msg is grpc.aio.EOF:
                    break
                yield msg
        except BaseException as e:
            err = self._failed(e)
            if err is e:
                raise
            raise err from None
        self._finish(None)
