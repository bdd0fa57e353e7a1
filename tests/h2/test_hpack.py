"""Our HPACK decoder against the ``hpack`` package's encoder (the same
choices grpc clients make: indexing, Huffman, table size updates) and
against RFC 7541's examples."""

from __future__ import annotations

import hpack as reference
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.h2.hpack import DecodeError, Decoder

_names = st.sampled_from(
    [
        ":path",
        ":method",
        "content-type",
        "user-agent",
        "containerd-namespace",
        "x-a",
        "grpc-timeout",
    ]
)
_values = st.text(min_size=0, max_size=60)


@settings(max_examples=200, deadline=None)
@given(
    blocks=st.lists(st.lists(st.tuples(_names, _values), max_size=8), min_size=1, max_size=6),
    huffman=st.booleans(),
    table=st.sampled_from([0, 64, 256, 4096]),
)
def test_matches_the_reference_encoder(
    blocks: list[list[tuple[str, str]]], huffman: bool, table: int
) -> None:
    enc = reference.Encoder()
    enc.header_table_size = table  # emits a size update in the next block
    dec = Decoder()
    for block in blocks:
        data = enc.encode(block, huffman=huffman)
        assert dec.decode(data) == block


def test_rfc7541_c3_requests_without_huffman() -> None:
    dec = Decoder()
    first = bytes.fromhex("828684410f7777772e6578616d706c652e636f6d")
    assert dec.decode(first) == [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ]
    second = bytes.fromhex("828684be58086e6f2d6361636865")
    assert dec.decode(second) == [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ]
    assert dec.size == 110


def test_rfc7541_c4_huffman() -> None:
    dec = Decoder()
    data = bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff")
    assert dec.decode(data)[-1] == (":authority", "www.example.com")


@pytest.mark.parametrize(
    "data",
    [
        b"\xfe",  # index 126: past both tables
        b"\x80",  # index 0
        b"\x40\x05ab",  # a name longer than the block
        b"\x3f\xe2\x1f",  # a table size (4097) over what was allowed
        b"\x82\xff\xff\xff\xff\xff\x7f",  # an integer past 2**28
    ],
)
def test_bad_blocks_are_refused(data: bytes) -> None:
    with pytest.raises(DecodeError):
        Decoder().decode(data)
