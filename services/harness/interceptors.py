"""The servicer edge: the one place where an exception becomes a status.

Every RPC passes through ``EdgeInterceptor``, which records the gRPC metric
families and maps typed errors (``api.errdefs``) to status codes.  Any other
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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from api import errdefs, errgrpc
from services.harness.decoding import Undecodable, tolerant
from services.harness.metrics import GO_CODE_NAMES, GrpcServerMetrics

log = logging.getLogger(__name__)

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class _Call:
    """Per-RPC bookkeeping: labels, timing and the final code."""

    __slots__ = ("labels", "metrics", "start")

    def __init__(self, metrics: GrpcServerMetrics | None, labels: tuple[str, str, str]) -> None:
        self.metrics = metrics
        self.labels = labels
        self.start = time.perf_counter()
        if metrics is not None:
            metrics.started.labels(*labels).inc()

    def received(self) -> None:
        if self.metrics is not None:
            self.metrics.received.labels(*self.labels).inc()

    def sent(self) -> None:
        if self.metrics is not None:
            self.metrics.sent.labels(*self.labels).inc()

    def done(self, code: grpc.StatusCode) -> None:
        if self.metrics is not None:
            self.metrics.handled.labels(*self.labels, GO_CODE_NAMES[code.name]).inc()
            self.metrics.handling.labels(*self.labels).observe(time.perf_counter() - self.start)


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


class EdgeInterceptor(grpc.aio.ServerInterceptor):
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
        _, service, method = details.method.split("/", 2)
        metrics = self.metrics
        req_des, resp_ser = handler.request_deserializer, handler.response_serializer
        if req_des is not None:  # None: the handler takes raw bytes (a relay)
            req_des = tolerant(req_des)

        if handler.unary_unary is not None:
            inner_uu: Any = handler.unary_unary

            async def unary_unary(req: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
                call = _Call(metrics, ("unary", service, method))
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

            async def stream_unary(it: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
                call = _Call(metrics, ("client_stream", service, method))
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
        kind = "bidi_stream" if client_streams else "server_stream"

        async def stream(arg: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            call = _Call(metrics, (kind, service, method))
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


def _cancel_or(ctx: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return _code_of(ctx)
