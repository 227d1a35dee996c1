"""An adversarial operator's second pass: other instances of each kind of issue 10.

Input strings that are not Unicode text (a lone surrogate, in an id, a value or
a key) are one failed item each, never a crash while journaling them.  A file
the run writes is none of the files it reads: an output or a journal that is
the pipeline file or the input (by name, through a symlink or a hard link), a
``--log-file`` that is any of the run's files, are refused (exit 2) before
anything is written, and the refused file is left as it was.  A value that
would make the run start without end (a concurrency of many digits) is
refused like any value out of range.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from stagedretry.cli._exit import ExitCode

from ._corpus import INPUT, KEY, Case, Ran, run_args, sim_pipeline
from .cases_secrets import files as gemini_files
from .cases_secrets import pipeline as gemini_pipeline

PIPELINE = sim_pipeline(sim="seed = 3\ninvalid_rate = 0.0")
GOOD = json.dumps({"id": "item-1", "title": "Title 1"})


def _rows(ran: Ran) -> dict[str, dict[str, object]]:
    text = (ran.folder / "out/results.jsonl").read_text("utf-8")
    return {str(row["id"]): row for row in map(json.loads, text.splitlines())}


def _key_not_shown(key: str) -> Callable[[Ran], None]:
    """The check: no piece of *key* (8 characters or more) in stdout, stderr or any file."""
    pieces = {key[i : i + 8] for i in range(len(key) - 7)} - {KEY[:8]}

    def check(ran: Ran) -> None:
        texts = [ran.out, ran.err] + [
            p.read_bytes().decode("utf-8", "replace") for p in ran.folder.rglob("*") if p.is_file()
        ]
        for text in texts:
            assert not any(piece in text for piece in pieces), text[:2000]

    return check


def _key_refused(key: str) -> Callable[[Ran], None]:
    """The check: the key is not shown, and the run wrote nothing (no item was recorded)."""
    not_shown = _key_not_shown(key)

    def check(ran: Ran) -> None:
        not_shown(ran)
        assert not (ran.folder / "out").exists(), sorted(ran.folder.rglob("*"))

    return check


def _stopped_at_first_name(ran: Ran) -> None:
    """The check: a rejected key stops ``caches delete`` at its first name, unshown."""
    _key_not_shown(WRONG_KEY)(ran)
    assert ran.err.count("could not delete") == 1, ran.err


def _no_control_characters(ran: Ran) -> None:
    """The check: stderr holds no control character but the line ends."""
    assert not any((c < " " and c != "\n") or "\x7f" <= c <= "\x9f" for c in ran.err), ran.err


def _foreign_database(*statements: str) -> Callable[[Path], None]:
    """Another program's SQLite file where the journal goes."""

    def make(folder: Path) -> None:
        (folder / "out").mkdir(exist_ok=True)
        with contextlib.closing(sqlite3.connect(folder / "out/journal.sqlite")) as db:
            for statement in statements:
                db.execute(statement)
            db.commit()

    return make


def _database_untouched(*tables: str) -> Callable[[Ran], None]:
    """The check: the file still holds only its own tables, in its own journal mode."""

    def check(ran: Ran) -> None:
        with contextlib.closing(sqlite3.connect(ran.folder / "out/journal.sqlite")) as db:
            names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        assert names == set(tables), names
        assert mode == "delete", mode
        assert not (ran.folder / "out/results.jsonl").exists()

    return check


def _one_short_line(ran: Ran) -> None:
    """The check: the error is one line, not a page."""
    assert ran.err.count("\n") == 1, ran.err[:1000]
    assert len(ran.err) < 400, ran.err[:1000]


def _line_2_failed(reason: str) -> Callable[[Ran], None]:
    """The check: line 2 is a failed ``input_error`` item whose reason says *reason*; line 1 ran."""

    def check(ran: Ran) -> None:
        rows = _rows(ran)
        assert rows["item-1"]["status"] == "succeeded", rows
        bad = [row for row in rows.values() if row["line"] == 2]
        assert len(bad) == 1, rows
        assert bad[0]["status"] == "failed", bad
        assert str(bad[0]["reason"]).startswith("input_error: line 2:"), bad
        assert reason in str(bad[0]["reason"]), bad

    return check


def _all_succeeded(ran: Ran) -> None:
    rows = _rows(ran)
    assert {row["status"] for row in rows.values()} == {"succeeded"}, rows
    assert "item-\N{GRINNING FACE}" in rows, rows


def _unchanged(name: str, text: str) -> Callable[[Ran], None]:
    def check(ran: Ran) -> None:
        assert (ran.folder / name).read_text("utf-8") == text
        assert not (ran.folder / "out/results.jsonl").exists()

    return check


def _symlink(target: str, link: str) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        (folder / link).parent.mkdir(parents=True, exist_ok=True)
        (folder / link).symlink_to(folder / target)

    return make


def _link_to(link: str, to: str) -> Callable[[Path], None]:
    """A symbolic link *link* holding *to* as it is (absolute, or relative to the link)."""

    def make(folder: Path) -> None:
        (folder / link).parent.mkdir(parents=True, exist_ok=True)
        (folder / link).symlink_to(to)

    return make


def _fifo(name: str) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(folder / name)

    return make


def _link_kept(link: str, target: str) -> Callable[[Ran], None]:
    """The check: the link is still a link to *target* (the rename did not replace it)."""

    def check(ran: Ran) -> None:
        assert (ran.folder / link).is_symlink()
        assert os.readlink(ran.folder / link) == target

    return check


def _hard_link(target: str, link: str) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        (folder / link).parent.mkdir(parents=True, exist_ok=True)
        os.link(folder / target, folder / link)

    return make


def _surrogate_case(name: str, line: str) -> Case:
    return Case(
        name=f"adv_surrogate_{name}",
        args=run_args(),
        code=ExitCode.SOME_FAILED,
        files={"pipeline.toml": PIPELINE, "input.jsonl": f"{GOOD}\n{line}\n"},
        check=_line_2_failed("lone surrogate (\\ud800)"),
        timeout=30,
    )


BAD_KEYS = (
    ("newline", KEY[:20] + "\n" + KEY[20:], "a control character"),
    ("escape", KEY[:20] + "\x1b[2J" + KEY[20:], "a control character"),
    ("space", KEY[:20] + " " + KEY[20:], "a space"),
    ("non_ascii", KEY[:20] + "\N{LATIN SMALL LETTER O WITH DIAERESIS}" + KEY[20:], "a non-ASCII"),
)
WRONG_KEY = "AIzaSyWrong-0123456789-abcdefghijklmno"


CASES: list[Case] = [
    # -- strings that are not Unicode text: one failed item, never a crash while journaling
    _surrogate_case("id", '{"id": "\\ud800", "title": "t"}'),
    _surrogate_case("value", '{"id": "item-2", "title": "a \\ud800 b"}'),
    _surrogate_case("key", '{"id": "item-2", "title": "t", "\\ud800": 1}'),
    Case(
        name="adv_surrogate_pair_is_text",
        args=run_args(),
        code=ExitCode.OK,
        files={
            "pipeline.toml": PIPELINE,
            "input.jsonl": f'{GOOD}\n{{"id": "item-\\ud83d\\ude00", "title": "t"}}\n',
        },
        check=_all_succeeded,
        timeout=30,
    ),
    # -- a value that would start the run without end
    Case(
        name="adv_concurrency_of_many_digits",
        args=run_args("--set", "run.concurrency=99999999999999"),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        stderr=r"run\.concurrency: expected a whole number in \[1, 1024\]",
        timeout=20,
    ),
    Case(
        name="adv_concurrency_option_of_many_digits",
        args=run_args("--concurrency", "99999999999999"),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        stderr=r"run\.concurrency: expected a whole number in \[1, 1024\]",
        timeout=20,
    ),
    # -- a file the run writes is none of the files it reads
    Case(
        name="adv_output_is_the_pipeline_file",
        args=run_args("--output", "pipeline.toml"),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        stderr=r"output\.path: must differ from the pipeline file",
        check=_unchanged("pipeline.toml", PIPELINE),
        timeout=20,
    ),
    Case(
        name="adv_journal_is_the_pipeline_file",
        args=run_args("--journal", "pipeline.toml"),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        stderr=r"journal\.path: must differ from the pipeline file",
        check=_unchanged("pipeline.toml", PIPELINE),
        timeout=20,
    ),
    Case(
        name="adv_journal_is_the_input",
        args=run_args("--journal", "input.jsonl"),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        stderr=r"journal\.path: must differ from input\.path",
        check=_unchanged("input.jsonl", INPUT),
        timeout=20,
    ),
    Case(
        name="adv_output_is_a_symlink_to_the_input",
        args=run_args("--output", "out/link.jsonl"),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        before=_symlink("input.jsonl", "out/link.jsonl"),
        stderr=r"output\.path: must differ from input\.path",
        check=_unchanged("input.jsonl", INPUT),
        timeout=20,
    ),
    Case(
        name="adv_output_is_a_hard_link_to_the_input",
        args=run_args("--output", "out/link.jsonl"),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        before=_hard_link("input.jsonl", "out/link.jsonl"),
        stderr=r"output\.path: must differ from input\.path",
        check=_unchanged("input.jsonl", INPUT),
        timeout=20,
    ),
    Case(
        name="adv_journal_is_a_hard_link_to_the_pipeline",
        args=run_args("--journal", "out/j.sqlite"),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        before=_hard_link("pipeline.toml", "out/j.sqlite"),
        stderr=r"journal\.path: must differ from the pipeline file",
        check=_unchanged("pipeline.toml", PIPELINE),
        timeout=20,
    ),
    # -- an output that is not a regular file: the rename that replaces the output would swap a
    # device or a link (the same as /dev/null or /dev/stdout) for a regular file
    Case(
        name="adv_output_is_a_link_to_a_device",
        args=run_args("--output", "out/null.jsonl"),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        before=_link_to("out/null.jsonl", "/dev/null"),
        stderr=r"output\.path: '.*null\.jsonl' is not a regular file",
        check=_link_kept("out/null.jsonl", "/dev/null"),
        timeout=20,
    ),
    Case(
        name="adv_output_is_a_link_to_a_file",
        args=run_args("--output", "out/link.jsonl"),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT, "elsewhere.jsonl": ""},
        before=_link_to("out/link.jsonl", "../elsewhere.jsonl"),
        stderr=r"output\.path: '.*link\.jsonl' is a symbolic link",
        check=_link_kept("out/link.jsonl", "../elsewhere.jsonl"),
        timeout=20,
    ),
    Case(
        name="adv_output_is_a_fifo",
        args=run_args("--output", "out/fifo"),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        before=_fifo("out/fifo"),
        stderr=r"output\.path: '.*fifo' is not a regular file",
        timeout=20,
    ),
    Case(
        name="adv_journal_is_a_fifo",
        args=run_args("--journal", "out/fifo"),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        before=_fifo("out/fifo"),
        stderr=r"journal\.path: '.*fifo' is not a regular file",
        timeout=20,
    ),
    *(
        Case(
            name=f"adv_log_file_is_the_{what}",
            args=run_args("--log-file", path),
            code=ExitCode.USAGE,
            files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
            stderr=rf"--log-file '{path}' must differ from {name}",
            check=_unchanged(kept, {"pipeline.toml": PIPELINE, "input.jsonl": INPUT}[kept]),
            timeout=20,
        )
        for what, path, name, kept in (
            ("input", "input.jsonl", r"input\.path", "input.jsonl"),
            ("pipeline", "pipeline.toml", "the pipeline file", "pipeline.toml"),
            ("output", "out/results.jsonl", r"output\.path", "input.jsonl"),
            ("journal", "out/journal.sqlite", r"journal\.path", "input.jsonl"),
        )
    ),
    # -- a key that no API key can be: refused before any request (exit 2), never shown; before,
    # a key with a line break failed every item as final ("Forbidden control character")
    *(
        Case(
            name=f"adv_key_with_{what}_runs_nothing",
            args=run_args(),
            code=ExitCode.USAGE,
            files=gemini_files(gemini_pipeline(backend="gemini")),
            env={"GEMINI_API_KEY": key},
            stderr=rf"GEMINI_API_KEY environment variable holds {kind}.* at position 21",
            check=_key_refused(key),
            timeout=20,
        )
        for what, key, kind in BAD_KEYS
    ),
    *(
        Case(
            name=f"adv_caches_{command}_key_with_{what}",
            args=("caches", command, *names, "--base-url", "{emulator}"),
            code=ExitCode.USAGE,
            env={"GEMINI_API_KEY": key},
            stderr=rf"GEMINI_API_KEY environment variable holds {kind}",
            check=_key_not_shown(key),
            timeout=20,
        )
        for what, key, kind in BAD_KEYS[:2]
        for command, names in (("list", ()), ("delete", ("abc",)))
    ),
    # -- caches commands that cannot be done: one short sentence, bounded, a documented code
    *(
        Case(
            name=f"adv_caches_{command}_wrong_key",
            args=("caches", command, *names, "--base-url", "{emulator}"),
            code=ExitCode.RUN_STOPPED,
            env={"GEMINI_API_KEY": WRONG_KEY},
            stderr=r"the API key was rejected \(API_KEY_INVALID\)[^{]*fix it and run the same "
            r"command again\n$",
            check=_stopped_at_first_name if command == "delete" else _key_not_shown(WRONG_KEY),
            timeout=30,
        )
        for command, names in (("list", ()), ("delete", ("abc", "def")))
    ),
    *(
        Case(
            name=f"adv_caches_{command}_{where}",
            args=("caches", command, *names, "--base-url", url),
            code=ExitCode.SOME_FAILED,
            env={"GEMINI_API_KEY": KEY},
            stderr=rf"{doing}.*{said}",
            check=_key_not_shown(KEY),
            timeout=60,
        )
        for command, names, doing in (
            ("list", (), "listing the caches failed"),
            ("delete", ("abc",), "could not delete cachedContents/abc"),
        )
        for where, url, said in (("dead_port", "http://127.0.0.1:9", "Connection refused"),)
    ),
    # A --base-url without its scheme is refused before anything is sent (see cases_switch).
    *(
        Case(
            name=f"adv_caches_{command}_no_scheme",
            args=("caches", command, *names, "--base-url", "127.0.0.1:9"),
            code=ExitCode.USAGE,
            env={"GEMINI_API_KEY": KEY},
            stderr=r"Invalid value for '--base-url': expected an http\(s\) URL",
            check=_key_not_shown(KEY),
            timeout=60,
        )
        for command, names in (("list", ()), ("delete", ("abc",)))
    ),
    # -- text from outside (a config key, a --set key, a path) never drives the terminal
    Case(
        name="adv_config_key_with_escapes",
        args=("plan", "check", "pipeline.toml"),
        code=ExitCode.USAGE,
        files={
            "pipeline.toml": PIPELINE.replace(
                "[run]\n", '[run]\n"\\u001b[2J\\u001b]0;pwned\\u0007" = 1\n'
            ),
            "input.jsonl": INPUT,
        },
        stderr=r"run\.\\x1b\[2J\\x1b\]0;pwned\\x07: unknown key",
        check=_no_control_characters,
        timeout=20,
    ),
    Case(
        name="adv_set_key_with_escapes",
        args=run_args("--set", "run.\x1b[2J\nx=1"),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        stderr=r"--set run\.\\x1b\[2J\\nx: cannot read the key",
        check=_no_control_characters,
        timeout=20,
    ),
    Case(
        name="adv_output_path_with_escapes",
        args=run_args("--output", "/sys/\x1b[2J/out.jsonl"),
        code=ExitCode.IO_ERROR,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        stderr=r"/sys/\\x1b\[2J/out\.jsonl",
        check=_no_control_characters,
        timeout=20,
    ),
    # -- another program's SQLite file as the journal: refused as not a journal (exit 2, not an
    # I/O error), and left as it was (no table added, its journal mode kept)
    Case(
        name="adv_journal_is_a_database_with_a_results_table",
        args=run_args(),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        before=_foreign_database("CREATE TABLE results (x)", "INSERT INTO results VALUES (1)"),
        stderr=r"journal\.sqlite' is not a stagedretry journal \(it holds other tables: results\)",
        check=_database_untouched("results"),
        timeout=20,
    ),
    Case(
        name="adv_journal_is_a_database_with_a_meta_table_of_its_own",
        args=run_args(),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        before=_foreign_database("CREATE TABLE meta (name, size)"),
        stderr=r"is not a stagedretry journal \(its table 'meta' has no column 'key'\)",
        check=_database_untouched("meta"),
        timeout=20,
    ),
    # -- a page pasted as a key: named in one short line (the whole key was printed before)
    *(
        Case(
            name=f"adv_huge_key_in_{what}",
            args=("plan", "check", "pipeline.toml"),
            code=ExitCode.USAGE,
            files={
                "pipeline.toml": PIPELINE.replace(anchor, f"{anchor}\n{'k' * 500_000} = 1"),
                "input.jsonl": INPUT,
            },
            stderr=rf"{where}\.k{{60}}\.\.\. \(500000 characters\): unknown key",
            check=_one_short_line,
            timeout=20,
        )
        for what, where, anchor in (
            ("run", "run", "concurrency = 2"),
            ("backend_sim", r"backend\.sim", "invalid_rate = 0.0"),
            ("a_stage", r"plan\.stages\[1\]", 'kind = "partial"'),
        )
    ),
    Case(
        name="adv_huge_set_key",
        args=("plan", "check", "pipeline.toml", "--set", "a" + ".b" * 5_000 + "=1"),
        code=ExitCode.USAGE,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        stderr=r"--set a\.b\.b.*\.\.\. \(10001 characters\): the key is nested",
        check=_one_short_line,
        timeout=20,
    ),
    # -- a FIFO nobody writes or reads: every open is bounded (each one waited for ever before)
    Case(
        name="adv_log_file_is_a_fifo_nobody_reads",
        args=run_args("--log-file", "out/fifo"),
        code=ExitCode.IO_ERROR,
        files={"pipeline.toml": PIPELINE, "input.jsonl": INPUT},
        before=_fifo("out/fifo"),
        stderr=r"cannot open the log file 'out/fifo': it is a FIFO that no process reads",
        timeout=20,
    ),
    Case(
        name="adv_request_log_is_a_fifo_nobody_reads",
        args=run_args(),
        code=ExitCode.IO_ERROR,
        files={
            "pipeline.toml": PIPELINE.replace(
                "concurrency = 2", 'concurrency = 2\nrequest_log = "out/fifo"'
            ),
            "input.jsonl": INPUT,
        },
        before=_fifo("out/fifo"),
        stderr=r"cannot open the request log '.*fifo': it is a FIFO that no process reads",
        timeout=20,
    ),
    *(
        Case(
            name=f"adv_{what}_is_a_fifo_nobody_writes",
            args=("plan", "check", "pipeline.toml"),
            code=ExitCode.USAGE,
            files={"pipeline.toml": PIPELINE.replace(old, new), "input.jsonl": INPUT},
            before=_fifo("fifo"),
            stderr=rf"{key}: '.*fifo' is not a regular file",
            timeout=20,
        )
        for what, old, new, key in (
            (
                "template_file",
                'template = "Describe {title}."',
                'template_file = "fifo"',
                r"input\.template_file",
            ),
            ("schema", "[output]\n", '[output]\nschema = "fifo"\n', r"output\.schema"),
        )
    ),
    Case(
        name="adv_pipeline_is_a_fifo_nobody_writes",
        args=("plan", "check", "fifo.toml"),
        code=ExitCode.USAGE,
        before=_fifo("fifo.toml"),
        stderr=r"fifo\.toml: cannot read the file \(not a regular file\)",
        timeout=20,
    ),
    # -- the request log is a file the run writes, so none of those it reads
    *(
        Case(
            name=f"adv_request_log_is_the_{what}",
            args=run_args(),
            code=ExitCode.USAGE,
            files={
                "pipeline.toml": PIPELINE.replace(
                    "concurrency = 2", f'concurrency = 2\nrequest_log = "{path}"'
                ),
                "input.jsonl": INPUT,
            },
            stderr=rf"run\.request_log: must differ from {name}",
            check=_unchanged("input.jsonl", INPUT),
            timeout=20,
        )
        for what, path, name in (
            ("input", "input.jsonl", r"input\.path"),
            ("pipeline", "pipeline.toml", "the pipeline file"),
            ("journal", "out/journal.sqlite", r"journal\.path"),
        )
    ),
]
