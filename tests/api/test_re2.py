"""Go (RE2) regular expressions on Python's re (api.re2).

The match table was checked against Go's regexp package through containerd
v1.6.20's filters (``v~=<pattern>`` against a field ``v``).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api import re2
from api.re2 import RegexpError


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("abc", "xabcx", True),
        ("", "anything", True),
        ("x|", "y", True),
        # $ is the end of the text only; \z likewise.
        ("^abc$", "abc\n", False),
        ("abc$", "abc", True),
        ("a\\z", "a\n", False),
        ("(?m)^abc$", "x\nabc\ny", True),
        # Perl classes and word boundaries are ASCII-only.
        ("\\d", "٣", False),
        ("\\d", "3", True),
        ("\\w", "é", False),
        ("\\s", "\v", False),
        ("\\s", "\xa0", False),
        ("\\bfoo\\b", "éfooé", True),
        ("\\Bfoo", "éfoo", False),
        # A brace that does not form a repeat is literal text.
        ("a{,2}", "a{,2}", True),
        ("a{,2}", "aa", False),
        ("a{2}", "aa", True),
        ("x{01}", "x{01}", True),
        # POSIX classes.
        ("[[:alpha:]]+", "abc", True),
        ("[[:alpha:]]", ":", False),
        ("[[:^digit:]]", "1", False),
        ("[[:a]", "[", True),
        # Flags are scoped to the rest of the enclosing group.
        ("(?i)abc", "ABC", True),
        ("a(?i)bc", "aBC", True),
        ("a(?i)bc", "ABC", False),
        ("(?i:a)b", "AB", False),
        ("(?i-i)A", "a", False),
        ("(?i)k", "\u212a", True),
        ("(?i)[^k]", "\u212a", False),
        ("(?i)[[:^upper:]]", "A", False),
        ("(?U)a+", "aaa", True),
        ("(?)a", "a", True),
        # Unicode general categories.
        ("\\pL", "é", True),
        ("\\p{Lu}", "é", False),
        ("\\PL", "1", True),
        ("\\p{^Ll}", "a", False),
        ("\\pN+", "٣", True),
        # Literal text and numeric escapes.
        ("\\Qa.b\\E", "axb", False),
        ("\\Qa.b\\E", "a.b", True),
        ("\\Qa.b", "a.b", True),
        ("\\x{e9}", "é", True),
        ("\\x41", "A", True),
        ("\\101", "A", True),
        ("\\_", "_", True),
        # Names, repetition of assertions, classes that start with ].
        ("(?P<n>a)", "a", True),
        ("(?P<1>a)", "a", True),
        ("a*?", "a", True),
        ("^*a", "a", True),
        ("a(?i)*", "aa", True),
        ("[]a]", "]", True),
        ("[^]a]", "b", True),
        # . excludes newline unless (?s); negated classes include it.
        (".", "\n", False),
        ("(?s).", "\n", True),
        ("[^a]", "\n", True),
    ],
)
def test_matches_like_go(pattern: str, value: str, expected: bool) -> None:
    assert (re2.compile(pattern).search(value) is not None) is expected


@pytest.mark.parametrize(
    ("pattern", "code"),
    [
        ("a\\Z", "invalid escape sequence"),
        ("\\1", "invalid escape sequence"),
        ("(a)\\1", "invalid escape sequence"),
        ("\\8", "invalid escape sequence"),
        ("\\q", "invalid escape sequence"),
        ("\\C", "invalid escape sequence"),
        ("[\\b]", "invalid escape sequence"),
        ("\\x{110000}", "invalid escape sequence"),
        ("a\\", "trailing backslash at end of expression"),
        ("a{1001}", "invalid repeat count"),
        ("a{3,2}", "invalid repeat count"),
        ("(a{30}){40}", "invalid repeat count"),
        ("[[:foo:]]", "invalid character class range"),
        ("[z-a]", "invalid character class range"),
        ("\\pX", "invalid character class range"),
        ("a(?=b)", "invalid or unsupported Perl syntax"),
        ("(?<n>a)", "invalid or unsupported Perl syntax"),
        ("(?-)", "invalid or unsupported Perl syntax"),
        ("(?P<>a)", "invalid named capture"),
        ("(?P<n", "invalid named capture"),
        ("a**", "invalid nested repetition operator"),
        ("a*+", "invalid nested repetition operator"),
        ("*a", "missing argument to repetition operator"),
        ("(?i)*", "missing argument to repetition operator"),
        ("a|*", "missing argument to repetition operator"),
        ("(", "missing closing )"),
        (")", "unexpected )"),
        ("[a", "missing closing ]"),
        ("a\udc80", "invalid UTF-8"),
    ],
)
def test_rejects_like_go(pattern: str, code: str) -> None:
    with pytest.raises(RegexpError) as info:
        re2.compile(pattern)
    assert info.value.code == code
    assert str(info.value).startswith(f"error parsing regexp: {code}: `")


def test_scripts_are_not_supported() -> None:
    # Go accepts \p{Greek}; Python's unicodedata has no script property, so
    # such a selector fails to compile here and never matches.
    with pytest.raises(RegexpError):
        re2.compile("\\p{Greek}")


def test_nested_flag_repeat_wraps() -> None:
    # Go reads a*(?i)* as (a*)*; Python would reject "a**".
    assert re2.compile("ba*(?i)*c").search("bc")


def test_compile_is_cached() -> None:
    assert re2.compile("a+b") is re2.compile("a+b")


@given(pattern=st.text(max_size=20))
def test_never_raises_anything_else_property(pattern: str) -> None:
    try:
        compiled = re2.compile(pattern)
    except RegexpError:
        return
    compiled.search(pattern)
    compiled.search("")


# Patterns in the subset where Go and Python agree on plain ASCII text
# without newlines: literals, ., groups, alternation, classes, quantifiers.
_atoms = st.sampled_from(["a", "b", "c", ".", "[ab]", "[^a]", "[a-c]", "(a|b)", "(?:ab)", "x"])
_quantifiers = st.sampled_from(["", "", "*", "+", "?", "{2}", "{1,2}", "*?"])
_simple = st.lists(st.tuples(_atoms, _quantifiers).map("".join), min_size=1, max_size=5).map(
    "".join
)


@given(pattern=_simple, value=st.text(alphabet="abcx", max_size=10))
def test_agrees_with_python_on_common_subset_property(pattern: str, value: str) -> None:
    expected = re.search(pattern, value) is not None
    assert (re2.compile(pattern).search(value) is not None) is expected


@given(value=st.text(st.characters(exclude_categories=["Cs"])).filter(lambda v: "\\E" not in v))
def test_quoted_literal_matches_itself_property(value: str) -> None:
    compiled = re2.compile("^\\Q" + value + "\\E$")
    assert compiled.search(value)
    assert not compiled.search(value + "!")
