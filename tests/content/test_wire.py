"""Write requests parsed and laid out without copying their data, checked
against protobuf's own encoding and decoding."""

from __future__ import annotations

import os

import pytest
from google.protobuf.message import DecodeError

from api.containerd.services.content.v1 import content_pb2
from services.content.wire import encode_write, parse_write

REQUESTS = [
    content_pb2.WriteContentRequest(action=content_pb2.WRITE, offset=5, data=b"abc"),
    content_pb2.WriteContentRequest(action=content_pb2.WRITE, data=os.urandom(1 << 20)),
    content_pb2.WriteContentRequest(
        action=content_pb2.COMMIT, ref="r", total=9, expected="sha256:x", labels={"a": "b"}
    ),
    content_pb2.WriteContentRequest(),
    content_pb2.WriteContentRequest(data=os.urandom(1000), labels={"k": "v"}, offset=-3),
]


@pytest.mark.parametrize("message", REQUESTS)
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_parse_reads_what_protobuf_reads(
    message: content_pb2.WriteContentRequest, kind: type
) -> None:
    raw = message.SerializeToString()
    got = parse_write(kind(raw))
    assert (got.action, got.ref, got.total, got.expected, got.offset) == (
        message.action,
        message.ref,
        message.total,
        message.expected,
        message.offset,
    )
    assert dict(got.labels) == dict(message.labels)
    assert bytes(got.data) == message.data


def test_a_repeated_data_field_keeps_the_last_as_protobuf_does() -> None:
    raw = (
        content_pb2.WriteContentRequest(data=b"first").SerializeToString()
        + content_pb2.WriteContentRequest(offset=7, data=b"second").SerializeToString()
    )
    got = parse_write(raw)
    want = content_pb2.WriteContentRequest.FromString(raw)
    assert (bytes(got.data), got.offset) == (want.data, want.offset) == (b"second", 7)


@pytest.mark.parametrize(
    "raw",
    [
        content_pb2.WriteContentRequest(data=b"abcdef").SerializeToString()[:-2],  # short data
        b"\x28\xff",  # offset's varint cut off
        b"\x0b",  # wire type 3 (groups)
    ],
)
def test_malformed_requests_do_not_decode(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_write(raw)


@pytest.mark.parametrize("offset", [0, 1, 127, 128, 300, 1 << 40])
def test_encode_lays_out_what_protobuf_serialises(offset: int) -> None:
    data = os.urandom(777)
    want = content_pb2.WriteContentRequest(action=content_pb2.WRITE, offset=offset, data=data)
    assert encode_write(offset, memoryview(data)) == want.SerializeToString()
    assert encode_write(offset, data) == want.SerializeToString()
