"""Content times keep their nanoseconds from the store to the wire and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.content.convert import GO_ZERO_SECONDS, from_timestamp, timestamp
from services.content.ingest import format_time, parse_time
from services.content.store import NsTime, ns_of

NS = 1_764_620_000_123_456_789


def test_a_time_made_from_nanoseconds_puts_them_on_the_wire() -> None:
    t = NsTime.of(NS)
    assert t == datetime(2025, 12, 1, 20, 13, 20, 123456, UTC)
    ts = timestamp(t)
    assert (ts.seconds, ts.nanos) == (1_764_620_000, 123_456_789)
    back = from_timestamp(ts)
    assert isinstance(back, NsTime) and back.ns == NS
    assert timestamp(NsTime.of(NS)).ToNanoseconds() == NS


def test_go_zero_time_and_plain_datetimes() -> None:
    zero = from_timestamp(timestamp(NsTime.of(GO_ZERO_SECONDS * 1_000_000_000)))
    assert zero == datetime(1, 1, 1, tzinfo=UTC)
    assert timestamp(zero).seconds == GO_ZERO_SECONDS
    # A copy made by datetime's own methods has no nanoseconds: its microseconds go out.
    later = NsTime.of(NS).replace(microsecond=7)
    assert (timestamp(later).seconds, timestamp(later).nanos) == (1_764_620_000, 7_000)
    plain = datetime(2025, 1, 2, 3, 4, 5, 600, UTC) + timedelta(microseconds=1)
    assert timestamp(plain).nanos == 601_000


def test_ingest_time_files_keep_nanoseconds() -> None:
    # containerd writes startedat/updatedat as RFC 3339 with nanoseconds.
    t = parse_time("2025-12-01T20:13:20.123456789Z")
    assert ns_of(t) == NS and format_time(ns_of(t)) == "2025-12-01T20:13:20.123456789Z"
    assert ns_of(parse_time("2025-12-01T22:13:20.5+02:00")) == 1_764_620_000_500_000_000
    assert ns_of(datetime(2025, 12, 1, 20, 13, 20, 123456, UTC)) == NS - 789
