"""The diff service on the daemon socket: an ordered list of typed differs.

As containerd's services/diff/local.go: the ``io.containerd.service.v1
diff-service`` plugin picks the differs named by its ``default`` key (or
every loaded differ, in config order) and, for every Apply and Diff call,
tries them in that order; a differ that answers NotImplemented (a media type
it does not handle) passes the call to the next.  The gRPC edge is the same
``DiffServicer`` the diff plugin serves, fed with the ordered differ bound
to each request's namespace and lease headers, so the differ plugin writes
what it produces into the caller's namespace, under the caller's lease.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from api import errdefs
from api.containerd.services.diff.v1 import diff_pb2_grpc
from api.types import Descriptor, Mount
from daemon import health as daemon_health
from daemon import registry
from daemon.capabilities import GrpcService, Liveness
from daemon.registry import InitContext, Registration
from services.diff.content import Metadata
from services.diff.servicer import SERVICE_NAME, Differ, DiffServicer
from services.harness.health import HealthServicer


@runtime_checkable
class ScopedDiffer(Protocol):
    """A differ that can act for one caller (its namespace and lease headers)."""

    def scoped(self, metadata: Metadata) -> Differ: ...


class OrderedDiffer:
    """Applier and Comparer over ``differs`` in order; NotImplemented falls through."""

    def __init__(self, differs: Sequence[Differ]) -> None:
        self.differs = tuple(differs)

    async def apply(
        self,
        desc: Descriptor,
        mounts: Sequence[Mount],
        payloads: Mapping[str, bytes] | None = None,
        *,
        sync_fs: bool = False,
    ) -> Descriptor:
        last: errdefs.ErrdefsError = errdefs.NotImplemented("no differ")
        for d in self.differs:
            try:
                return await d.apply(desc, mounts, payloads, sync_fs=sync_fs)
            except errdefs.NotImplemented as e:
                last = e
        raise last

    async def compare(
        self,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        media_type: str = "",
        ref: str = "",
        labels: Mapping[str, str] | None = None,
        *,
        source_date_epoch: datetime | None = None,
    ) -> Descriptor:
        last: errdefs.ErrdefsError = errdefs.NotImplemented("no differ")
        for d in self.differs:
            try:
                return await d.compare(
                    lower, upper, media_type, ref, labels, source_date_epoch=source_date_epoch
                )
            except errdefs.NotImplemented as e:
                last = e
        raise last


class DiffService:
    """The ``diff-service`` plugin's instance: the differs in order of preference."""

    def __init__(self, differs: Sequence[ScopedDiffer]) -> None:
        self.differs = tuple(differs)

    def for_request(self, metadata: Metadata) -> Differ:
        return OrderedDiffer([d.scoped(metadata) for d in self.differs])


@dataclass(frozen=True)
class DiffServiceConfig:
    # Differ ids in order of preference; empty means every loaded differ in
    # config order (containerd's default, ["walking"], names its built-in one).
    default: tuple[str, ...] = ()


async def _diff_service(ic: InitContext) -> DiffService:
    differs = ic.instances(registry.DIFF, ScopedDiffer)  # type: ignore[type-abstract]
    cfg: DiffServiceConfig = ic.config
    order = list(cfg.default) or list(differs)
    chosen = []
    for name in order:
        if name not in differs:
            loaded = ic.by_type(registry.DIFF).get(name)
            if loaded is not None and loaded.error is not None:
                raise errdefs.FailedPrecondition(
                    f"could not load required differ due plugin init error: {name}: {loaded.error}"
                )
            raise errdefs.NotFound(f"needed differ not loaded: {name}")
        chosen.append(differs[name])
    if not chosen:
        raise errdefs.NotFound(f"no plugins registered for {registry.DIFF}")
    ic.meta.exports["order"] = ",".join(order)
    return DiffService(chosen)


async def _grpc_init(ic: InitContext) -> GrpcService:
    svc = ic.plugins.get_by_id(registry.SERVICE, "diff-service")
    assert isinstance(svc, DiffService)
    servicer = DiffServicer(svc.for_request)
    live = [d for d in svc.differs if isinstance(d, Liveness)]
    on_serving = None
    if live:
        on_serving = daemon_health.follow(ic.resource(HealthServicer), SERVICE_NAME, live)
    return GrpcService(
        (SERVICE_NAME,),
        lambda server: diff_pb2_grpc.add_DiffServicer_to_server(servicer, server),
        on_serving=on_serving,
    )


REGISTRATIONS = (
    Registration(
        registry.SERVICE, "diff-service", _diff_service, (registry.DIFF,), DiffServiceConfig
    ),
    Registration(registry.GRPC, "diff", _grpc_init, (registry.SERVICE,)),
)
