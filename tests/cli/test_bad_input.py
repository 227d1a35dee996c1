"""Bad input lines become failed items with reason ``input_error``; the run goes on."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from .conftest import Invocation, Job, records

GOOD = records(4)
BAD_LINES: list[tuple[str | bytes, str]] = [
    ("this is not json", "input_error: line {line}: not valid JSON (Expecting value"),
    ("[1, 2, 3]", "input_error: line {line}: expected a JSON object, got a list"),
    ('{"title": "No id", "author": "A"}', "input_error: line {line}: the record has no 'id' field"),
    (
        '{"id": null, "title": "T", "author": "A"}',
        "input_error: line {line}: the 'id' field must be a non-empty string or an integer, "
        "got null",
    ),
    (
        '{"id": ["x"], "title": "T", "author": "A"}',
        "input_error: line {line}: the 'id' field must be a non-empty string or an integer, "
        "got a list",
    ),
    (
        '{"id": "no-author", "title": "T"}',
        "input_error: line {line}: the record has no field 'author' used by the prompt template",
    ),
    (
        '{"id": "null-author", "title": "T", "author": null}',
        "input_error: line {line}: the record has no field 'author' used by the prompt template",
    ),
    (
        b'{"id": "latin1", "title": "caf\xe9", "author": "A"}',
        "input_error: line {line}: not UTF-8 text",
    ),
]


def _write_mixed(job: Job) -> dict[int, str]:
    """Good records with every kind of bad line between them; line -> expected reason."""
    expected: dict[int, str] = {}
    with job.input.open("wb") as file:
        line = 0
        for i, good in enumerate(GOOD):
            line += 1
            file.write(json.dumps(good).encode() + b"\n")
            for bad, reason in BAD_LINES[i * 2 : i * 2 + 2]:
                line += 1
                file.write((bad if isinstance(bad, bytes) else bad.encode()) + b"\n")
                expected[line] = reason.format(line=line)
        file.write(b"\n   \n")  # blank lines are not items
    return expected


def test_each_kind_of_bad_line_fails_its_item_and_the_run_goes_on(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(sim="seed = 1\ninvalid_rate = 0.0")
    expected = _write_mixed(job)
    done = cli("run", str(job.pipeline), "--json")
    assert done.code == 1  # some items failed
    summary = done.json()
    assert summary["items"]["total"] == len(GOOD) + len(BAD_LINES)
    assert summary["items"]["succeeded"] == len(GOOD)
    assert summary["items"]["failed"] == len(BAD_LINES)
    assert summary["items"]["input_errors"] == len(BAD_LINES)
    lines = job.lines()
    assert len(lines) == len(GOOD) + len(BAD_LINES)
    by_line = {row["line"]: row for row in lines}
    for line, reason in expected.items():
        row = by_line[line]
        assert row["status"] == "failed"
        assert row["reason"].startswith(reason), (row["reason"], reason)
        assert row["prompts"] == 0
    # A line without a usable id is named by its line number.
    assert by_line[2]["id"] == "line:2"
    assert by_line[9]["id"] == "no-author"
    assert [row["status"] for row in lines if row["id"].startswith("item-")] == ["succeeded"] * len(
        GOOD
    )


def test_bad_lines_are_not_retried_on_resume(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(sim="seed = 1\ninvalid_rate = 0.0")
    _write_mixed(job)
    first = cli("run", str(job.pipeline), "--json").json()
    again = cli("run", str(job.pipeline), "--json").json()
    assert sum(again["this_run"].values()) == 0
    assert again["items"] == {**first["items"], "from_journal": len(GOOD) + len(BAD_LINES)}


def test_duplicate_ids_stop_the_run_before_it_starts_naming_the_lines(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    rows = records(5)
    rows.insert(3, dict(rows[1]))
    rows.append({"id": 7, "title": "T", "author": "A"})
    rows.append({"id": "7", "title": "T", "author": "A"})
    job = make_job(rows=rows, run='concurrency = 2\nrequest_log = "out/requests.jsonl"')
    done = cli("run", str(job.pipeline))
    assert done.code == 2
    assert (
        "input.jsonl repeats item ids, each id must be unique: "
        "'item-0002' on lines 2, 4; '7' on lines 7, 8" in done.err
    )
    assert not (job.folder / "out/requests.jsonl").exists()
    checked = cli("plan", "check", str(job.pipeline))
    assert checked.code == 2
    assert "'item-0002' on lines 2, 4" in checked.err


def test_plan_check_counts_the_lines_that_will_fail_per_reason_and_exits_1(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job()
    expected = _write_mixed(job)
    total = len(GOOD) + len(BAD_LINES)
    checked = cli("plan", "check", str(job.pipeline))
    assert checked.code == 1
    assert f"{total} items in input.jsonl" in checked.out
    assert not checked.out.startswith("ok:")
    assert "1 record: not valid JSON (Expecting value" in checked.out
    # Equal reasons are one row, with their lines.
    missing = [n for n, r in expected.items() if "no field 'author'" in r]
    assert len(missing) == 2
    assert (
        "2 records: the record has no field 'author' used by the prompt template "
        f"(lines {missing[0]}, {missing[1]})"
    ) in checked.out
    counts = re.findall(r"^  (\d+) records?: ", checked.out, re.MULTILINE)
    assert sum(int(n) for n in counts) == len(BAD_LINES)
    assert (
        f"{len(BAD_LINES)} of {total} records would fail with input_error; fix them, or accept "
        f"them with --max-bad-records {len(BAD_LINES)}"
    ) in checked.err

    accepted = cli("plan", "check", str(job.pipeline), "--max-bad-records", str(len(BAD_LINES)))
    assert accepted.code == 0
    assert accepted.out.startswith("ok: pipeline.toml")
    assert f"{len(BAD_LINES)} of {total} records will fail with input_error" in accepted.out
    too_few = cli("plan", "check", str(job.pipeline), "--max-bad-records", str(len(BAD_LINES) - 1))
    assert too_few.code == 1


def test_an_unreadable_input_exits_2_in_one_sentence(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job()
    job.input.unlink()
    job.input.mkdir()
    done = cli("run", str(job.pipeline))
    assert done.code == 2
    assert done.err.count("\n") == 1
    assert "input.path:" in done.err
    assert "is not a readable file" in done.err


def test_a_line_without_an_id_never_clashes_with_a_real_id(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    # Line 2 has no id, so it is called "line:2"; line 4 really is "line:2", line 5 "line:2#1".
    rows: list[dict[str, object] | str] = [
        *records(1),
        "not json",
        *records(1, start=2),
        {"id": "line:2", "title": "T", "author": "A"},
        {"id": "line:2#1", "title": "T", "author": "A"},
    ]
    job = make_job(rows=rows, sim="seed = 1\ninvalid_rate = 0.0")
    done = cli("run", str(job.pipeline), "--json")
    assert done.code == 1, done.err  # the bad line failed; no duplicate-id error
    lines = job.lines()
    assert [(row["line"], row["id"], row["status"]) for row in lines] == [
        (1, "item-0001", "succeeded"),
        (2, "line:2#2", "failed"),
        (3, "item-0002", "succeeded"),
        (4, "line:2", "succeeded"),
        (5, "line:2#1", "succeeded"),
    ]
    again = cli("run", str(job.pipeline), "--json").json()
    assert again["items"]["from_journal"] == 5
