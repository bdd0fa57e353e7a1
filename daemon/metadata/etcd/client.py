"""A small asyncio client for etcd's v3 gRPC API (our own stubs, ``api/etcd``).

One channel per endpoint; calls go to the current endpoint and move on to
the next when it cannot be reached (a killed member), so a cluster that keeps
its quorum keeps answering.  Every call carries etcd's ``hasleader``
metadata: a member that lost its leader refuses at once ("no leader")
instead of waiting, and the client tries another.  Each call is bounded by
the caller's deadline (a ``time.monotonic`` value).

Errors are this module's own until the store turns them into typed ones:
``Unreachable`` (no member answered in time; retry or give up),
``CommitUnknown`` (a Txn failed after it may have been sent: it may have
been applied), ``OutOfTime`` (the deadline passed before etcd was asked),
``StaleRevision`` (a read at a revision etcd compacted or has not reached),
``EtcdRejected`` (etcd refused the request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc

from api.etcd.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from daemon.metadata.etcd.settings import EtcdSettings

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")

# etcd's "require a leader" request metadata (rpctypes.MetadataRequireLeaderKey).
HAS_LEADER = (("hasleader", "true"),)

MAX_MESSAGE = 64 << 20
CHANNEL_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    # etcd's default --grpc-keepalive-min-time is 5s: ping no more often.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)

_RETRYABLE = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
)


class EtcdError(Exception):
    """Base of the client's errors (never an ``errdefs`` error: transaction
    functions may catch those, and must not catch these)."""


class Unreachable(EtcdError):
    pass


class CommitUnknown(Unreachable):
    pass


class OutOfTime(Unreachable):
    """The deadline passed before etcd was asked at all: the time went to
    whatever the caller did before (retries, a slow transaction function)."""


class StaleRevision(EtcdError):
    pass


class EtcdRejected(EtcdError):
    pass


def _not_sent(details: str) -> bool:
    """The call failed before etcd could act on it."""
    d = details.lower()
    return (
        "failed to connect" in d
        or "connection refused" in d
        or "no leader" in d
        or "not capable" in d
        or "dns resolution failed" in d
    )


class EtcdClient:
    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self.endpoints = settings.endpoints
        self._channels: list[grpc.aio.Channel] = []
        self._kv: list[rpc_pb2_grpc.KVAsyncStub] = []
        self._lease: list[rpc_pb2_grpc.LeaseAsyncStub] = []
        self._watch: list[rpc_pb2_grpc.WatchAsyncStub] = []
        self._maint: list[rpc_pb2_grpc.MaintenanceAsyncStub] = []
        self.current = 0
        self._closed = False

    def _open(self) -> None:
        if self._closed:
            raise Unreachable("etcd client is closed")
        if self._channels:
            return
        tls = self.settings.tls
        creds = grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert) if tls is not None else None
        for ep in self.endpoints:
            if creds is not None:
                ch = grpc.aio.secure_channel(ep.target, creds, options=CHANNEL_OPTIONS)
            else:
                ch = grpc.aio.insecure_channel(ep.target, options=CHANNEL_OPTIONS)
            self._channels.append(ch)
            self._kv.append(rpc_pb2_grpc.KVStub(ch))
            self._lease.append(rpc_pb2_grpc.LeaseStub(ch))
            self._watch.append(rpc_pb2_grpc.WatchStub(ch))
            self._maint.append(rpc_pb2_grpc.MaintenanceStub(ch))

    def describe(self) -> str:
        return ",".join(str(ep) for ep in self.endpoints)

    def rotate(self, failed: int) -> None:
        """Move off endpoint ``failed`` (unless another call already did)."""
        if self.current == failed:
            self.current = (failed + 1) % len(self.endpoints)

    async def _unary(
        self,
        call: Callable[[int], Any],
        deadline: float,
        *,
        safe: bool,
        what: str,
    ) -> Any:
        """``call(i)`` (an awaitable RPC on endpoint i, given its timeout via
        ``_timeout``) with failover until ``deadline``."""
        if self._closed:
            raise Unreachable("etcd client is closed")
        self._open()
        last = ""
        tries = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if not last:
                    raise OutOfTime(f"the deadline passed before etcd was asked ({what})")
                raise Unreachable(last)
            i = self.current
            try:
                return await call(i)(remaining)
            except grpc.aio.AioRpcError as e:
                code, details = e.code(), e.details() or ""
                if code not in _RETRYABLE:
                    low = details.lower()
                    if code == grpc.StatusCode.OUT_OF_RANGE and (
                        "compacted" in low or "future revision" in low
                    ):
                        raise StaleRevision(details) from None
                    raise EtcdRejected(f"{self.endpoints[i]}: {code.name}: {details}") from None
                last = f"{self.endpoints[i]}: {details or code.name}"
                self.rotate(i)
                if not safe and not _not_sent(details):
                    raise CommitUnknown(f"{what}: {last}") from None
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise Unreachable(last) from None
                tries += 1
                if tries % len(self.endpoints) == 0:
                    # Every endpoint failed once: wait a little before the next round.
                    pause = min(0.05 * (tries // len(self.endpoints)), 0.5)
                    await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))

    async def range(self, req: rpc_pb2.RangeRequest, deadline: float) -> rpc_pb2.RangeResponse:
        def call(i: int) -> Callable[[float], Any]:
            return lambda t: self._kv[i].Range(req, timeout=t, metadata=HAS_LEADER)

        resp: rpc_pb2.RangeResponse = await self._unary(call, deadline, safe=True, what="range")
        return resp

    async def txn(
        self, req: rpc_pb2.TxnRequest, deadline: float, *, read_only: bool = False
    ) -> rpc_pb2.TxnResponse:
        """A Txn; CommitUnknown when it failed after it may have reached etcd
        (never for a read-only one, which is safe to repeat)."""

        def call(i: int) -> Callable[[float], Any]:
            return lambda t: self._kv[i].Txn(req, timeout=t, metadata=HAS_LEADER)

        resp: rpc_pb2.TxnResponse = await self._unary(call, deadline, safe=read_only, what="txn")
        return resp

    async def lease_grant(self, ttl: int, deadline: float) -> rpc_pb2.LeaseGrantResponse:
        def call(i: int) -> Callable[[float], Any]:
            req = rpc_pb2.LeaseGrantRequest(TTL=ttl)
            return lambda t: self._lease[i].LeaseGrant(req, timeout=t, metadata=HAS_LEADER)

        resp: rpc_pb2.LeaseGrantResponse = await self._unary(
            call, deadline, safe=True, what="lease grant"
        )
        if resp.error:
            raise EtcdRejected(f"lease grant: {resp.error}")
        return resp

    async def lease_revoke(self, lease: int, deadline: float) -> None:
        def call(i: int) -> Callable[[float], Any]:
            req = rpc_pb2.LeaseRevokeRequest(ID=lease)
            return lambda t: self._lease[i].LeaseRevoke(req, timeout=t, metadata=HAS_LEADER)

        try:
            await self._unary(call, deadline, safe=True, what="lease revoke")
        except EtcdRejected as e:
            if "not found" not in str(e):
                raise

    async def status(self, index: int, within: float) -> rpc_pb2.StatusResponse:
        """Maintenance.Status of one member (no failover: it is about that member)."""
        self._open()
        resp: rpc_pb2.StatusResponse = await self._maint[index].Status(
            rpc_pb2.StatusRequest(), timeout=within
        )
        return resp

    def lease_stub(self, index: int) -> rpc_pb2_grpc.LeaseAsyncStub:
        self._open()
        return self._lease[index]

    def watch_stub(self, index: int) -> rpc_pb2_grpc.WatchAsyncStub:
        self._open()
        return self._watch[index]

    async def wait_connected(self, within: float) -> bool:
        """Until some endpoint's channel is ready (True) or ``within`` seconds passed."""
        self._open()
        waits = [asyncio.ensure_future(ch.channel_ready()) for ch in self._channels]
        try:
            done, _ = await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        return bool(done)

    async def close(self) -> None:
        self._closed = True
        channels, self._channels = self._channels, []
        for ch in channels:
            await ch.close()
