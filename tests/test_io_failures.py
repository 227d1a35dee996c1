"""Files that cannot be written, for real: the output writer and the journal on a full disk.

The failures are the operating system's own.  ``RLIMIT_FSIZE`` makes any write
past the limit fail with ``EFBIG`` (Python ignores ``SIGXFSZ``); the limit is
set only around the one call under test and always restored.  ``/dev/full``
fails every write with ``ENOSPC``.
"""

from __future__ import annotations

import contextlib
import errno
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stagedretry import ItemResult, ItemStatus, Journal, JournalError, JournalIOError
from stagedretry.cli._files import IOFailures, remedy, with_journal_hint
from stagedretry.cli._output import OutputBusy, OutputError, OutputWriter


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """No file this process writes may grow past *limit* bytes while the block runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def rows_of(texts: list[str]) -> list[tuple[ItemResult, int | None]]:
    return [
        (ItemResult(f"item-{n}", ItemStatus.SUCCEEDED, output={"text": t}), n)
        for n, t in enumerate(texts, 1)
    ]


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    old=st.lists(st.text(max_size=40), max_size=5),
    new=st.lists(st.text(max_size=200), min_size=1, max_size=30),
    share=st.floats(min_value=0.0, max_value=1.5),
)
def test_a_rebuild_replaces_the_file_whole_or_not_at_all(
    tmp_path_factory: pytest.TempPathFactory, old: list[str], new: list[str], share: float
) -> None:
    folder = tmp_path_factory.mktemp("out")
    path = folder / "results.jsonl"
    writer = OutputWriter(path)
    writer.rebuild(rows_of(old))
    before = path.read_bytes()
    # What the new file holds, written once without a limit elsewhere.
    probe = OutputWriter(folder / "probe.jsonl")
    probe.rebuild(rows_of(new))
    size = (folder / "probe.jsonl").stat().st_size
    limit = int(size * share)
    failure: OutputError | None = None
    try:
        with file_size_limit(limit):
            writer.rebuild(rows_of(new))
    except OutputError as exc:
        failure = exc
    if failure is None:
        assert limit >= size
        assert path.read_bytes() == (folder / "probe.jsonl").read_bytes()
    else:
        assert limit < size
        assert str(failure) == f"cannot write the output file {str(path)!r}: File too large"
        assert failure.errno == errno.EFBIG
        assert path.read_bytes() == before  # the old file, untouched
    assert not writer.tmp.exists()


def test_no_space_left_removes_the_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    writer = OutputWriter(path)
    writer.rebuild(rows_of(["kept"]))
    writer.tmp.symlink_to("/dev/full")  # every write to it fails with ENOSPC
    with pytest.raises(OutputError) as caught:
        writer.rebuild(rows_of(["new"] * 3))
    assert str(caught.value) == (
        f"cannot write the output file {str(path)!r}: No space left on device"
    )
    hint = with_journal_hint(caught.value, tmp_path / "journal.sqlite")
    assert hint.endswith(
        f"every finished result is in the journal {str(tmp_path / 'journal.sqlite')!r}: "
        "free some space and run the same command again"
    )
    assert not writer.tmp.is_symlink()
    assert not writer.tmp.exists()
    assert '"kept"' in path.read_text("utf-8")


def test_an_append_that_fails_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    writer = OutputWriter(path)
    writer.rebuild(rows_of(["x" * 100]))
    with file_size_limit(path.stat().st_size + 10), pytest.raises(OutputError) as caught:
        writer.append(*rows_of(["y" * 100])[0])
    assert str(caught.value) == f"cannot write the output file {str(path)!r}: File too large"
    writer.close()


def test_a_second_writer_of_one_output_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.jsonl"
    first, second = OutputWriter(path), OutputWriter(path)
    first.lock()
    try:
        with pytest.raises(OutputBusy, match="another stagedretry run is writing the output"):
            second.lock()
    finally:
        first.unlock()
    second.lock()  # free again once the first lets go
    second.unlock()


def _result(n: int) -> ItemResult:
    return ItemResult(f"item-{n}", ItemStatus.SUCCEEDED, output={"text": "z" * 3000})


def _record_many(journal: Journal, run: int) -> None:
    for n in range(2, 200):
        journal.record(_result(n), line=n, digest=f"d{n}", run=run)


def test_a_full_journal_keeps_what_it_committed(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with Journal(path, "fp") as journal:
        run = journal.begin_run()
        journal.record(_result(1), line=1, digest="d1", run=run)
        wal = path.with_name(path.name + "-wal")
        limit = max(path.stat().st_size, wal.stat().st_size) + 20_000
        with file_size_limit(limit), pytest.raises(JournalIOError) as caught:
            _record_many(journal, run)
        assert isinstance(caught.value, JournalError)
        assert str(caught.value).startswith(
            f"cannot record a result in the journal {str(path)!r}: "
        )
        assert remedy(caught.value).startswith("free some space")
        # Every commit before the failure is there; the failed one left no trace.
        committed = journal.count()
        assert 1 < committed < 200
        assert [r.id for r in journal.results()] == [f"item-{n}" for n in range(1, committed + 1)]
        # Space is back: the same journal takes the result that failed.
        journal.record(_result(committed + 1), line=committed + 1, digest="d", run=run)
    with Journal(path, "fp") as again:
        assert again.count() == committed + 1


def test_a_journal_under_a_file_names_both(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x", encoding="utf-8")
    path = tmp_path / "blocker" / "journal.sqlite"
    with pytest.raises(JournalIOError) as caught:
        Journal(path, "fp").open()
    assert str(caught.value) == (
        f"cannot create the folder of the journal {str(path)!r}: "
        f"{str(tmp_path / 'blocker')!r} is a file, not a folder"
    )


def test_a_journal_in_use_is_refused_but_is_no_io_failure(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with Journal(path, "fp"), pytest.raises(JournalError) as caught:
        Journal(path, "fp").open()
    assert not isinstance(caught.value, JournalIOError)
    assert "another stagedretry run is using the journal" in str(caught.value)


def test_the_first_failure_stops_the_run_once() -> None:
    stops: list[int] = []
    failures = IOFailures()
    assert not failures
    failures.stop = lambda: stops.append(1)
    failures.add("one")
    failures.add("two")
    assert failures.messages == ["one", "two"]
    assert stops == [1]
