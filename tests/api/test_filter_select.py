"""Filters that cannot hold the event loop (api.filters: RE2 matching, select,
parse_all_async).

Nothing here is timed: the hostile cases assert that matching runs on RE2 and
where it runs; tests/bench/bench_filters.py measures the delays.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence

import pytest

from api import filters, re2
from api.errdefs import InvalidArgument
from api.filters import (
    ALWAYS,
    Adaptor,
    AdaptorFunc,
    FilterSyntaxError,
    adapt_lease,
    parse,
    parse_all,
    parse_all_async,
    select,
    uses_regexp,
)

HOSTILE = 'labels."a"~="(a+)+$"'


def test_hostile_pattern_is_matched_by_re2() -> None:
    # With a backtracking engine this pattern explores 2**n paths on "a"*n + "!":
    # thirty a's froze the old daemon for minutes. RE2 answers in one pass.
    flt = parse(HOSTILE)
    assert isinstance(flt, filters.AllOf)
    selector = flt.filters[0]
    assert isinstance(selector, filters.Selector)
    assert isinstance(selector._regexp, re2.Regexp)
    assert not flt.match(adapt_lease("l", {"a": "a" * 30 + "!"}))
    assert not flt.match(adapt_lease("l", {"a": "a" * 4095 + "!"}))
    assert flt.match(adapt_lease("l", {"a": "b" + "a" * 4095}))


def test_pattern_re2_cannot_run_is_invalid_argument_naming_the_filter() -> None:
    expr = "name==x,labels.k~=/\\\\pL{1000}/"  # the regexp \pL{1000}, quoted
    with pytest.raises(FilterSyntaxError) as info:
        parse(expr)
    err = info.value
    assert isinstance(err, InvalidArgument)
    assert err.pos == expr.index("/")
    assert str(err) == (
        "filters: parse error: [name==x,labels.k~= >|/|< \\\\pL{1000}/]: unsupported regexp: "
        "RE2 cannot compile the regexp: pattern too large - compile failed: invalid argument"
    )
    with pytest.raises(FilterSyntaxError, match="more than 200000 nodes"):
        parse_all("name==x", "v~=" + "x{1000}" * 300)


def test_selector_built_directly_with_unsupported_pattern_raises() -> None:
    with pytest.raises(re2.RegexpUnsupported):
        filters.Selector(("v",), filters.Operator.MATCHES, "\\pL{1000}")


def test_uses_regexp() -> None:
    assert uses_regexp(parse_all("name==a", "labels.x~=b"))
    assert not uses_regexp(parse_all("name==a", "labels.x!=b", ""))
    assert not uses_regexp(ALWAYS)
    assert uses_regexp(AdaptorFilter())  # unknown filters might


class AdaptorFilter:
    def match(self, adaptor: Adaptor) -> bool:
        return True


def leases(n: int) -> list[tuple[str, dict[str, str]]]:
    return [(f"l{i}", {"a": "a" * 40 + ("" if i % 3 else "!")}) for i in range(n)]


def adapt_pair(item: tuple[str, dict[str, str]]) -> Adaptor:
    return adapt_lease(*item)


async def test_select_keeps_order_and_agrees_with_match() -> None:
    items = leases(50)
    for expr in (HOSTILE, 'labels."a"!=x', "id~=^l1", "id==l7", ""):
        flt = parse(expr)
        expected = [it for it in items if flt.match(adapt_pair(it))]
        assert await select(flt, items, adapt_pair) == expected
        assert expected or expr == "id==l7"
    assert await select(parse("id==l7"), items, adapt_pair) == [items[7]]
    assert await select(ALWAYS, items, adapt_pair) == items
    assert await select(parse(HOSTILE), [], adapt_pair) == []


def tracking(threads: set[int], nice: set[int] | None = None) -> Adaptor:
    def field(fieldpath: Sequence[str]) -> tuple[str, bool]:
        threads.add(threading.get_ident())
        if nice is not None:
            nice.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return "a" * 40, True

    return AdaptorFunc(field)


async def test_regexp_filters_match_off_the_loop_thread() -> None:
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    nice: set[int] = set()
    matched = await select(parse("v~=(a+)+$"), range(20), lambda _: tracking(threads, nice))
    assert matched == list(range(20))
    assert threads and loop_thread not in threads
    # Below the loop's priority (Linux sets niceness per thread).
    assert nice == {filters._THREAD_NICE}

    threads.clear()
    matched = await select(parse("v==x"), range(20), lambda _: tracking(threads))
    assert matched == [] and threads == {loop_thread}


async def test_plain_filters_yield_to_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # With no time per slice, every item is a slice: other tasks run between.
    monkeypatch.setattr(filters, "_LOOP_SLICE", 0.0)
    ran_during: list[int] = []
    progress: list[int] = []

    def adapt(i: int) -> Adaptor:
        progress.append(i)
        return adapt_lease(f"l{i}")

    async def other() -> None:
        ran_during.append(len(progress))

    task = asyncio.ensure_future(other())
    matched = await select(parse("id!=l3"), list(range(10)), adapt)
    await task
    assert matched == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert ran_during and 0 < ran_during[0] < 10


async def test_regexp_select_runs_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    # With no time per slice, every item is one trip to the matching thread,
    # so a cancelled call stops after the item in hand.
    monkeypatch.setattr(filters, "_THREAD_SLICE", 0.0)
    trips: list[tuple[int, str]] = []
    real_slice = filters._select_slice

    def counting_slice(*args):  # type: ignore[no-untyped-def]
        trips.append((args[3], threading.current_thread().name))
        return real_slice(*args)

    monkeypatch.setattr(filters, "_select_slice", counting_slice)
    items = leases(6)
    matched = await select(parse(HOSTILE), items, adapt_pair)
    assert matched == [items[1], items[2], items[4], items[5]]
    assert [start for start, _ in trips] == [0, 1, 2, 3, 4, 5]
    assert all(name.startswith("filter") for _, name in trips)


async def test_parse_all_async_agrees_with_parse_all() -> None:
    short = ("name==a", "labels.x~=^b")
    assert await parse_all_async(*short) == parse_all(*short)
    long = "name==" + "a" * 10_000
    assert await parse_all_async(long, "name==b") == parse_all(long, "name==b")
    with pytest.raises(FilterSyntaxError, match="expected value or quoted"):
        await parse_all_async("name==" + "a" * 10_000 + ",x==")
    assert await parse_all_async() is ALWAYS
