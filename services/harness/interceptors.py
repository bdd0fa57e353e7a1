"""The servicer edge: the one place where an exception becomes a status.

Every RPC passes through the edge (``edge_handler``), which records the gRPC
metric families and maps typed errors (``api.errdefs``) to status codes.  A
server hands its registrations an ``EdgeServer``, which wraps each handler
once when it is registered (an interceptor would wrap it on every call).  Any other
exception is logged with its traceback and answered as "internal error", so
nothing of the server's internals reaches a client.  A request that does not
decode (invalid UTF-8 in a string field) never reaches the handler: it is
answered InvalidArgument naming the field (``services.harness.decoding``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias

import grpc

from api import errdefs, errgrpc
from services.harness.decoding import Undecodable, tolerant
from services.harness.metrics import GO_CODE_NAMES, GrpcServerMetrics, MethodCounts

log = logging.getLogger(__name__)

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class _Call:
    """Per-RPC bookkeeping: timing and the final code."""

    __slots__ = ("counts", "labels", "on_done", "start")

    def __init__(
        self,
        counts: MethodCounts | None,
        labels: tuple[str, str, str],
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.counts = counts
        self.labels = labels
        self.on_done = on_done
        self.start = time.perf_counter()
        if counts is not None:
            counts.started += 1

    def received(self) -> None:
        if self.counts is not None:
            self.counts.received += 1

    def sent(self) -> None:
        if self.counts is not None:
            self.counts.sent += 1

    def done(self, code: grpc.StatusCode) -> None:
        if self.counts is not None:
            self.counts.done(GO_CODE_NAMES[code.name], time.perf_counter() - self.start)
        if self.on_done is not None:
            self.on_done()


async def _fail(call: _Call, ctx: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
    """Record and answer ``exc``; raises the abort the runtime expects."""
    code, message = errgrpc.to_status(exc)
    if code is grpc.StatusCode.INTERNAL and not isinstance(exc, errdefs.ErrdefsError):
        log.error("%s: unhandled error", call.labels[1] + "/" + call.labels[2], exc_info=exc)
    call.done(code)
    await ctx.abort(code, message)


def _code_of(ctx: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    code = ctx.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if code in (None, 0) else grpc.StatusCode.UNKNOWN


def _refuse(call: _Call, bad: Undecodable) -> errdefs.InvalidArgument:
    log.info("%s/%s: %s", call.labels[1], call.labels[2], bad.message)
    return errdefs.InvalidArgument(bad.message)


async def _counted(call: _Call, it: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for msg in it:
        call.received()
        if isinstance(msg, Undecodable):
            raise _refuse(call, msg)
        yield msg


def edge_handler(
    handler: Handler,
    full_method: str,
    metrics: GrpcServerMetrics | None,
    on_done: Callable[[], None] | None = None,
) -> Handler:
    """``handler`` (of ``/service/method``) with the edge around it: metrics,
    typed errors to status codes, undecodable requests refused; ``on_done``
    runs when each call ends."""
    _, service, method = full_method.split("/", 2)
    req_des, resp_ser = handler.request_deserializer, handler.response_serializer
    if req_des is not None:  # None: the handler takes raw bytes (a relay)
        req_des = tolerant(req_des)

    def method_metrics(kind: str) -> tuple[MethodCounts | None, tuple[str, str, str]]:
        labels = (kind, service, method)
        return (metrics.method(*labels) if metrics is not None else None), labels

    if handler.unary_unary is not None:
        inner_uu: Any = handler.unary_unary
        mm, labels = method_metrics("unary")

        async def unary_unary(req: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            call = _Call(mm, labels, on_done)
            call.received()
            try:
                if isinstance(req, Undecodable):
                    raise _refuse(call, req)
                resp = await inner_uu(req, ctx)
            except (grpc.aio.AbortError, asyncio.CancelledError) as e:
                call.done(_cancel_or(ctx, e))
                raise
            except Exception as e:
                await _fail(call, ctx, e)
                raise  # unreachable: abort raised
            call.sent()
            call.done(_code_of(ctx))
            return resp

        return grpc.unary_unary_rpc_method_handler(unary_unary, req_des, resp_ser)

    if handler.stream_unary is not None:
        inner_su: Any = handler.stream_unary
        mm, labels = method_metrics("client_stream")

        async def stream_unary(it: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            call = _Call(mm, labels, on_done)
            try:
                resp = await inner_su(_counted(call, it), ctx)
            except (grpc.aio.AbortError, asyncio.CancelledError) as e:
                call.done(_cancel_or(ctx, e))
                raise
            except Exception as e:
                await _fail(call, ctx, e)
                raise
            call.sent()
            call.done(_code_of(ctx))
            return resp

        return grpc.stream_unary_rpc_method_handler(stream_unary, req_des, resp_ser)

    streaming: Any = handler.unary_stream or handler.stream_stream
    assert streaming is not None
    client_streams = handler.stream_stream is not None
    mm, labels = method_metrics("bidi_stream" if client_streams else "server_stream")

    async def stream(arg: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        call = _Call(mm, labels, on_done)
        if client_streams:
            arg = _counted(call, arg)
        else:
            call.received()
        try:
            if isinstance(arg, Undecodable):
                raise _refuse(call, arg)
            result = streaming(arg, ctx)
            if inspect.isasyncgen(result):
                async for resp in result:
                    call.sent()
                    yield resp
            else:  # a handler that writes through ctx.write()
                await result
        except (grpc.aio.AbortError, asyncio.CancelledError) as e:
            call.done(_cancel_or(ctx, e))
            raise
        except Exception as e:
            await _fail(call, ctx, e)
            raise
        call.done(_code_of(ctx))

    if client_streams:
        return grpc.stream_stream_rpc_method_handler(stream, req_des, resp_ser)
    return grpc.unary_stream_rpc_method_handler(stream, req_des, resp_ser)


class _EdgeGenericHandler(grpc.GenericRpcHandler):
    """A generic handler whose handlers pass the edge (each wrapped once)."""

    def __init__(
        self,
        inner: grpc.GenericRpcHandler,
        metrics: GrpcServerMetrics | None,
        on_done: Callable[[], None] | None,
    ) -> None:
        self._inner = inner
        self._metrics = metrics
        self._on_done = on_done
        self._wrapped: dict[str, Handler | None] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        method = handler_call_details.method
        try:
            return self._wrapped[method]
        except KeyError:
            pass
        handler = self._inner.service(handler_call_details)
        wrapped = (
            None if handler is None else edge_handler(handler, method, self._metrics, self._on_done)
        )
        if len(self._wrapped) < 1024:  # a generic handler may answer any name
            self._wrapped[method] = wrapped
        return wrapped


class EdgeServer:
    """What a generated ``add_*Servicer_to_server`` is given instead of the
    server: every handler registered through it is wrapped by the edge once,
    at registration, rather than by an interceptor on every call."""

    def __init__(
        self,
        server: grpc.aio.Server,
        metrics: GrpcServerMetrics | None,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self._server = server
        self._metrics = metrics
        self._on_done = on_done

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_EdgeGenericHandler(h, self._metrics, self._on_done) for h in handlers)
        )

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, Handler]
    ) -> None:
        self._server.add_registered_method_handlers(
            service_name,
            {
                name: edge_handler(h, f"/{service_name}/{name}", self._metrics, self._on_done)
                for name, h in method_handlers.items()
            },
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    """The same edge as an interceptor, for a server whose registrations do not
    pass through an ``EdgeServer`` (it wraps the handler on every call)."""

    def __init__(self, metrics: GrpcServerMetrics | None) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None:
            return handler
        return edge_handler(handler, details.method, self.metrics)


def _cancel_or(ctx: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return _code_of(ctx)
