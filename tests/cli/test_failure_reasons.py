"""The summary says why: the reasons of the items that did not succeed, grouped and counted."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from stagedretry import Attempt, FieldError, ItemResult, ItemStatus, OutcomeKind
from stagedretry._describe import without_reprs
from stagedretry.cli._reasons import TIMES, group_reasons, item_reason, reason_lines

from .conftest import Invocation, Job


def _fatal(item: str, error: str) -> ItemResult:
    attempt = Attempt("s0", OutcomeKind.FATAL, 1, True, error=error)
    return ItemResult(item, ItemStatus.FAILED, attempts=(attempt,), reason=error, prompts=1)


def _exhausted(item: str, error: FieldError) -> ItemResult:
    attempt = Attempt("s1", OutcomeKind.INVALID, 2, True, error=str(error))
    return ItemResult(
        item, ItemStatus.EXHAUSTED, attempts=(attempt,), reason="no stage left", errors=(error,)
    )


def test_forty_equal_fatal_errors_are_one_line_with_their_count() -> None:
    results = [
        _fatal(f"item-{n}", "400 INVALID_ARGUMENT: temperature out of range") for n in range(40)
    ]
    results.append(ItemResult("ok", ItemStatus.SUCCEEDED))
    (reason,) = group_reasons(results)
    assert (reason.text, reason.count) == (
        "fatal: 400 INVALID_ARGUMENT: temperature out of range",
        40,
    )
    lines = [line.plain for line in reason_lines([reason])]
    assert f"  fatal: 400 INVALID_ARGUMENT: temperature out of range {TIMES}40" in lines


def test_what_varies_per_item_is_grouped_and_shown_as_an_ellipsis() -> None:
    results = [
        # The item's own id, a number and a quoted value vary; the status 400 does not.
        _fatal(f"rec-{n}", f"400 INVALID_ARGUMENT: record rec-{n} has {n} pages, not 'p{n}'")
        for n in range(12)
    ]
    results += [
        _exhausted(f"b{n}", FieldError("year", f"expected int, got 'x{n}'")) for n in range(3)
    ]
    reasons = group_reasons(results)
    assert [(r.text, r.count) for r in reasons] == [
        ("fatal: 400 INVALID_ARGUMENT: record … has … pages, not …", 12),
        ("exhausted (no stage left) after invalid: /year: expected int, got …", 3),
    ]


def test_a_few_recurring_values_are_reasons_of_their_own() -> None:
    # Found by trying it: items missing 'author' and items missing 'title' became one
    # "no field …" line. A value that recurs (a field's name) splits the group; one per
    # item (the id, a page count) still varies.
    results = [
        _fatal(f"rec-{n}", f"record rec-{n}: no field '{field}' ({n} bytes)")
        for n, field in enumerate(["author", "title"] * 20 + ["isbn"] * 3)
    ]
    reasons = group_reasons(results)
    assert [(r.text, r.count) for r in reasons] == [
        ("fatal: record …: no field 'author' (… bytes)", 20),
        ("fatal: record …: no field 'title' (… bytes)", 20),
        ("fatal: record …: no field 'isbn' (… bytes)", 3),
    ]


@given(st.lists(st.sampled_from(["author", "title", "year"]), min_size=2, max_size=30))
def test_recurring_values_split_so_that_counts_still_add_up(fields: list[str]) -> None:
    results = [_fatal(f"id-{n}", f"no field '{f}'") for n, f in enumerate(fields)]
    reasons = group_reasons(results)
    assert sum(r.count for r in reasons) == len(fields)
    for reason in reasons:
        if "…" not in reason.text:
            field = reason.text.split("'")[1]
            assert reason.count == fields.count(field)


def test_only_the_top_reasons_are_listed_and_the_rest_counted() -> None:
    results = [
        _fatal(f"{kind}-{n}", f"{kind} broke")
        for kind, times in zip("abcdefgh", (9, 8, 7, 6, 5, 3, 2, 1), strict=True)
        for n in range(times)
    ]
    reasons = group_reasons(results)
    assert [r.count for r in reasons] == [9, 8, 7, 6, 5, 3, 2, 1]
    lines = [line.plain for line in reason_lines(reasons)]
    assert lines[1] == f"  fatal: a broke {TIMES}9"
    assert lines[5] == f"  fatal: e broke {TIMES}5"
    assert lines[6] == "  and 3 more reasons (6 items; each is in the output file)"


def test_succeeded_and_cancelled_items_have_no_reason() -> None:
    assert item_reason(ItemResult("a", ItemStatus.SUCCEEDED)) is None
    assert item_reason(ItemResult("a", ItemStatus.CANCELLED, reason="run stopped: x")) is None
    assert group_reasons([]) == ()
    assert reason_lines([]) == []


def test_a_reason_shows_controls_as_escapes_and_no_object_reprs() -> None:
    text = item_reason(_fatal("a", "bad \x1b[31mred <ssl.SSLContext object at 0x7f00ab12> x"))
    assert text == "fatal: bad \\x1b[31mred SSLContext x"


@given(st.text(), st.sampled_from(["ssl.SSLContext object", "function f", "coroutine object g"]))
def test_no_address_survives_without_reprs(text: str, what: str) -> None:
    shown = without_reprs(f"{text}<{what} at 0x7f3a9c>{text}")
    assert not re.search(r" at 0x[0-9a-f]+>", shown)


def test_a_run_prints_its_failure_reasons_and_json_lists_them(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=12, sim="seed = 3\ninvalid_rate = 1.0")
    shown = cli("run", str(job.pipeline), "--no-progress")
    assert shown.code == 1
    assert "Why items did not succeed" in shown.out
    counts = [int(n) for n in re.findall(rf"{TIMES}(\d+)$", shown.out, re.MULTILINE)]
    assert sum(counts) == 12
    data = cli("run", str(job.pipeline), "--json").json()
    reasons = data["failure_reasons"]
    assert sum(r["count"] for r in reasons) == 12
    assert all(r["reason"].startswith("exhausted (") for r in reasons)


_STATUSES = st.sampled_from(list(ItemStatus))
_MESSAGES = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


@given(st.lists(st.tuples(_STATUSES, _MESSAGES), max_size=30))
def test_every_item_that_did_not_succeed_is_counted_once(items: list[tuple[Any, str]]) -> None:
    results = [
        _fatal(f"i{n}", message)
        if status is ItemStatus.FAILED
        else ItemResult(f"i{n}", status, reason=message or None)
        for n, (status, message) in enumerate(items)
    ]
    reasons = group_reasons(results)
    ended = [s for s, _ in items if s in (ItemStatus.FAILED, ItemStatus.EXHAUSTED)]
    assert sum(r.count for r in reasons) == len(ended)
    assert [r.count for r in reasons] == sorted((r.count for r in reasons), reverse=True)
    # Equal reasons are one group, shown as they are.
    texts = {item_reason(r) for r in results} - {None}
    assert len(reasons) <= len(texts)
    for reason in reasons:
        if reason.count == 1:
            assert reason.text in texts


def test_a_short_id_is_not_looked_for_inside_words() -> None:
    results = [_fatal(item, "bad data in a field") for item in ("a", "b", "d")]
    (reason,) = group_reasons(results)
    assert (reason.text, reason.count) == ("fatal: bad data in a field", 3)
