"""go_quote prints what Go's strconv.Quote (fmt %q) prints."""

from __future__ import annotations

import pytest

from api.goquote import go_quote

# Expected values are Go 1.19's fmt.Sprintf("%q", s).
CASES = [
    ("", '""'),
    ("plain", '"plain"'),
    ('say "hi"\\', '"say \\"hi\\"\\\\"'),
    ("tab\tnl\ncr\r", '"tab\\tnl\\ncr\\r"'),
    ("\a\b\f\v", '"\\a\\b\\f\\v"'),
    ("nul\x00del\x7f", '"nul\\x00del\\x7f"'),
    ("caf\u00e9 \u00fc", '"caf\u00e9 \u00fc"'),
    ("zero\u200bwidth", '"zero\\u200bwidth"'),
    ("nbsp\u00a0", '"nbsp\\u00a0"'),
    ("emoji \U0001f600", '"emoji \U0001f600"'),
    ("private \U000f0000", '"private \\U000f0000"'),
    ("bad \udcff byte", '"bad \\xff byte"'),
]


@pytest.mark.parametrize(("value", "expected"), CASES)
def test_matches_go(value: str, expected: str) -> None:
    assert go_quote(value) == expected
