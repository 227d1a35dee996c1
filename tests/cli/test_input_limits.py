"""Input records past the limits (depth, size, encoding) fail alone; a BOM is skipped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stagedretry._limits import MAX_DEPTH
from stagedretry.cli._input import MAX_LINE_BYTES, InputError, read_input
from stagedretry.cli.pipeline import InputConfig
from stagedretry.cli.pipeline._template import Template

from .conftest import Invocation, Job, records

TEMPLATE = Template.parse("Describe {title} by {author}.")


def deep_record(depth: int, item_id: str = "d") -> str:
    """The issue's record: ``{"id": "d", "card": [[[[...]]]]}`` with *depth* arrays in all."""
    inner = depth - 1  # the record's own object is one level
    return (
        f'{{"id": "{item_id}", "title": "T", "author": "A", "card": {"[" * inner}0{"]" * inner}}}'
    )


def read(path: Path) -> list[tuple[int, str, str | None]]:
    return [(r.line, r.id, r.error) for r in read_input(InputConfig(path, TEMPLATE))]


def test_a_record_nested_100000_deep_fails_alone_with_its_line(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    good = records(2)
    job = make_job(
        rows=[good[0], deep_record(100_000), good[1]], sim="seed = 1\ninvalid_rate = 0.0"
    )
    done = cli("run", str(job.pipeline), "--json")
    assert done.code == 1  # some items failed, and the run went on
    by_line = {row["line"]: row for row in job.lines()}
    assert by_line[2]["status"] == "failed"
    assert by_line[2]["reason"] == (
        f"input_error: line 2: the record is nested more than {MAX_DEPTH} levels deep"
    )
    assert by_line[2]["prompts"] == 0
    assert [by_line[1]["status"], by_line[3]["status"]] == ["succeeded", "succeeded"]


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(depths=st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=4))
def test_any_nesting_depth_never_raises_out_of_read_input(
    tmp_path: Path, depths: list[int]
) -> None:
    path = tmp_path / "input.jsonl"
    path.write_text("".join(deep_record(d, f"r{i}") + "\n" for i, d in enumerate(depths)))
    got = read(path)
    assert [line for line, _, _ in got] == list(range(1, len(depths) + 1))
    for (_, item_id, error), depth in zip(got, depths, strict=True):
        if depth > MAX_DEPTH:
            assert error == f"the record is nested more than {MAX_DEPTH} levels deep"
            assert item_id.startswith("line:")
        else:
            assert error is None


def test_a_utf8_byte_order_mark_is_not_part_of_record_1(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=3, sim="seed = 1\ninvalid_rate = 0.0")
    job.input.write_bytes(b"\xef\xbb\xbf" + job.input.read_bytes())
    assert read(job.input)[0] == (1, "item-0001", None)
    # Files joined with cat keep their marks: one at the start of a later line is skipped too.
    job.input.write_bytes(
        job.input.read_bytes().replace(b'\n{"id": "item-0003"', b'\n\xef\xbb\xbf{"id": "item-0003"')
    )
    assert job.input.read_bytes().count(b"\xef\xbb\xbf") == 2
    assert read(job.input)[2] == (3, "item-0003", None)
    done = cli("run", str(job.pipeline), "--json")
    assert done.code == 0
    assert done.json()["items"]["succeeded"] == 3


@pytest.mark.parametrize(
    ("bom", "encoding"),
    [(b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"), (b"\xff\xfe\x00\x00", "UTF-32")],
)
def test_a_utf16_or_utf32_input_stops_the_job_in_one_sentence(
    make_job: Callable[..., Job], cli: Callable[..., Invocation], bom: bytes, encoding: str
) -> None:
    job = make_job(items=2)
    job.input.write_bytes(bom + job.input.read_bytes())
    with pytest.raises(InputError, match=f"is {encoding} text; save it as UTF-8"):
        read(job.input)
    done = cli("run", str(job.pipeline))
    assert done.code == 2
    assert done.err.count("\n") == 1
    assert f"is {encoding} text" in done.err


def test_a_line_longer_than_the_limit_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "input.jsonl"
    huge = json.dumps({"id": "huge", "title": "x" * MAX_LINE_BYTES, "author": "A"})
    rows = [json.dumps(r) for r in records(2)]
    path.write_text(f"{rows[0]}\n{huge}\n{rows[1]}\n")
    got = read(path)
    assert got[0] == (1, "item-0001", None)
    assert got[1] == (
        2,
        "line:2",
        f"the line is {len(huge)} bytes long, more than the limit of {MAX_LINE_BYTES} bytes",
    )
    assert got[2] == (3, "item-0002", None)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b'{"id": "n", "title": NaN, "author": "A"}', "not valid JSON (NaN is not a JSON number)"),
        (b'{"id": "i", "title": -Infinity}', "not valid JSON (-Infinity is not a JSON number)"),
        (b'{"id": "u", "title": "caf\xe9"}', "not UTF-8 text (byte 26 of the line)"),
        (b'{"id": "big", "n": 1' + b"0" * 5000 + b"}", "not valid JSON (Exceeds the limit"),
    ],
)
def test_what_json_output_could_not_hold_fails_the_line(
    tmp_path: Path, line: bytes, error: str
) -> None:
    path = tmp_path / "input.jsonl"
    path.write_bytes(line + b"\n" + json.dumps(records(1)[0]).encode() + b"\n")
    (_, _, first), second = read(path)
    assert first is not None
    assert first.startswith(error)
    assert second == (2, "item-0001", None)


def test_an_input_path_through_a_file_names_that_file_as_the_other_files_do(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a folder\n")
    with pytest.raises(InputError) as caught:
        read(blocker / "books.jsonl")
    assert str(caught.value) == (
        f"cannot read the input file {str(blocker / 'books.jsonl')!r}: "
        f"{str(blocker)!r} is a file, not a folder"
    )
