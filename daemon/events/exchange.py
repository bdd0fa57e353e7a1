"""The event exchange: Publish, Forward and Subscribe (containerd's events/exchange).

An *envelope* (``containerd.types.Envelope``) carries the namespace, topic,
UTC timestamp and the event packed in an ``Any``.  ``publish`` wraps an
event from this process; ``forward`` passes on an envelope made elsewhere (a
shim's task events arrive that way); ``subscribe`` returns a stream of the
envelopes matching any of the given containerd filters (``topic``,
``namespace``, ``event.<field>``).

Slow subscribers never hold up publishers: each subscription has a bounded
queue, and a subscriber that lets it fill is *disconnected* — the envelopes
already queued are still delivered, then iteration raises ResourceExhausted
naming how many were queued.  Dropping single events silently would let a
client (waiting for a task exit, say) miss one without knowing; a
disconnected client knows to resubscribe and re-read state.

Filters holding a regular expression are not matched while broadcasting: one
match can take tens of milliseconds (api.filters), and a publisher serves
every namespace. Such a subscription queues every envelope and matches each
in a worker thread as its own reader takes it, so the cost lands on that
reader alone — and it is the one disconnected if it cannot keep up.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator
from types import TracebackType

from google.protobuf import any_pb2, message

from api import errdefs, filters, identifiers
from api.containerd.types import event_pb2
from api.goquote import go_quote
from api.types import Publisher as Publisher
from api.typeurl import TypeRegistry, topic_of
from daemon.events.adaptors import adapt_envelope

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 4096


_q = go_quote


def validate_topic(topic: str) -> None:
    """containerd's topic rule: ``/`` then identifier components separated by ``/``."""
    if not topic:
        raise errdefs.InvalidArgument(f"envelope topic {_q(topic)}: must not be empty")
    if not topic.startswith("/"):
        raise errdefs.InvalidArgument(f"envelope topic {_q(topic)}: must start with '/'")
    if len(topic) == 1:
        raise errdefs.InvalidArgument(
            f"envelope topic {_q(topic)}: must have at least one component"
        )
    for component in topic[1:].split("/"):
        try:
            identifiers.validate(component)
        except errdefs.InvalidArgument as e:
            raise errdefs.InvalidArgument(
                f"envelope topic {_q(topic)}: failed validation on component {_q(component)}: "
                f"{e.message}"
            ) from None


def validate_envelope(env: event_pb2.Envelope) -> None:
    try:
        identifiers.validate(env.namespace)
    except errdefs.InvalidArgument as e:
        raise errdefs.InvalidArgument(
            f"event envelope has invalid namespace: {e.message}"
        ) from None
    validate_topic(env.topic)
    if not env.HasField("timestamp") or (env.timestamp.seconds == 0 and env.timestamp.nanos == 0):
        raise errdefs.InvalidArgument("timestamp must be set on forwarded event")


class Subscription:
    """A stream of envelopes; iterate it with ``async for``, end it with ``close``."""

    def __init__(self, exchange: Exchange, flt: filters.Filter | None, maxsize: int) -> None:
        self._exchange = exchange
        self._filter = flt
        # Matched by the reader, off the loop, instead of by the publisher.
        self._deferred = flt is not None and filters.uses_regexp(flt)
        self._maxsize = maxsize
        self._items: collections.deque[event_pb2.Envelope] = collections.deque()
        self._ready = asyncio.Event()
        self._closed = False
        self._error: errdefs.ErrdefsError | None = None

    def _offer(self, env: event_pb2.Envelope) -> None:
        if self._closed:
            return
        if (
            self._filter is not None
            and not self._deferred
            and not self._filter.match(adapt_envelope(env, self._exchange.types))
        ):
            return
        if len(self._items) >= self._maxsize:
            log.warning(
                "events: disconnecting a subscriber that fell %d envelopes behind", self._maxsize
            )
            self._error = errdefs.ResourceExhausted(
                f"event subscriber fell behind by {self._maxsize} envelopes and was disconnected"
            )
            self._closed = True
            self._exchange._remove(self)
        else:
            self._items.append(env)
        self._ready.set()

    @property
    def pending(self) -> int:
        """Envelopes queued (not yet matched, for a regexp filter)."""
        return len(self._items)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._exchange._remove(self)
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[event_pb2.Envelope]:
        return self

    async def __anext__(self) -> event_pb2.Envelope:
        while True:
            if self._items:
                env = self._items.popleft()
                if self._deferred and not await self._matches(env):
                    continue
                return env
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()

    async def _matches(self, env: event_pb2.Envelope) -> bool:
        assert self._filter is not None
        adaptor = adapt_envelope(env, self._exchange.types)
        return await asyncio.to_thread(self._filter.match, adaptor)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Exchange:
    """Broadcasts envelopes to subscriptions; one per daemon, passed explicitly."""

    def __init__(
        self, types: TypeRegistry | None = None, queue_size: int = DEFAULT_QUEUE_SIZE
    ) -> None:
        self.types = types or TypeRegistry()
        self.queue_size = queue_size
        self._subs: list[Subscription] = []
        self.published = 0
        self.disconnected = 0

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    async def publish(self, namespace: str, event: message.Message, topic: str = "") -> None:
        try:
            identifiers.validate(namespace)
        except errdefs.InvalidArgument as e:
            raise errdefs.InvalidArgument(f"failed publishing event: {e.message}") from None
        if isinstance(event, any_pb2.Any):
            packed = event  # already packed (the Events.Publish RPC)
        else:
            topic = topic or topic_of(event)
            packed = self.types.pack(event)
        validate_topic(topic)
        env = event_pb2.Envelope(namespace=namespace, topic=topic, event=packed)
        env.timestamp.GetCurrentTime()
        self._broadcast(env)

    async def forward(self, envelope: event_pb2.Envelope) -> None:
        """Raises InvalidArgument for a bad namespace or topic or a missing timestamp."""
        validate_envelope(envelope)
        self._broadcast(envelope)

    def subscribe(self, *exprs: str, queue_size: int = 0) -> Subscription:
        """Raises InvalidArgument for a filter that does not parse."""
        flt = filters.parse_all(*exprs) if exprs else None
        sub = Subscription(self, flt, queue_size or self.queue_size)
        self._subs.append(sub)
        return sub

    def _broadcast(self, env: event_pb2.Envelope) -> None:
        self.published += 1
        log.debug("event %s in %s", env.topic, env.namespace)
        for sub in list(self._subs):
            sub._offer(env)

    def _remove(self, sub: Subscription) -> None:
        try:
            self._subs.remove(sub)
        except ValueError:
            return
        if sub._error is not None:
            self.disconnected += 1
