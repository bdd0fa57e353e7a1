"""HPACK's Huffman code (api.h2.huffman) against the ``hpack`` package's
encoder and decoder, and the strings RFC 7541 says are not codes."""

from __future__ import annotations

import pytest
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.huffman_table import decode_huffman
from hypothesis import given
from hypothesis import strategies as st

from api.h2.hpack import DecodeError, Decoder
from api.h2.huffman import CODES, decode

ENCODER = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


def test_the_code_is_rfc_7541s() -> None:
    assert tuple(zip(REQUEST_CODES, REQUEST_CODES_LENGTH, strict=True)) == CODES


@pytest.mark.parametrize("symbol", range(256))
def test_every_symbol_alone_and_repeated(symbol: int) -> None:
    for s in (bytes([symbol]), bytes([symbol]) * 7):
        assert decode(ENCODER.encode(s)) == s


@given(st.binary(max_size=200))
def test_decodes_what_the_reference_encodes(s: bytes) -> None:
    encoded = ENCODER.encode(s)
    assert decode(encoded) == s == decode_huffman(encoded)
    assert decode(memoryview(encoded)) == s


@given(st.binary(max_size=40))
def test_refuses_what_the_reference_refuses(data: bytes) -> None:
    try:
        expected: bytes | None = decode_huffman(data)
    except Exception:
        expected = None
    if expected is None:
        with pytest.raises(ValueError):
            decode(data)
    else:
        assert decode(data) == expected


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xff\xff\xff\xff", "EOS"),  # EOS (30 ones), then two bits of padding
        (b"\x1f\xff", "padding"),  # "a" (00011), then 11 bits of ones: too long a padding
        (b"\x18", "padding"),  # "a", then 000: padding must be ones
        (b"\xfe", "padding"),  # 11111110: no symbol, and not a padding
    ],
)
def test_not_a_code(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        decode(data)


def test_a_bad_code_in_a_header_block_is_a_decode_error() -> None:
    # a literal field (new name) whose Huffman-coded name is only padding gone wrong
    with pytest.raises(DecodeError, match="bad Huffman string"):
        Decoder().decode(b"\x40\x81\x18\x01v")
