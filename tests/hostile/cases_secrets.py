"""Hostile keys: too short, shaped like words and field names, full of metacharacters, echoed.

Each case sets ``GEMINI_API_KEY`` (or ``GOOGLE_API_KEY``) and runs a job.  A key
under 8 characters is not searched for, and says so once; any other key is
masked in any case and any piece of 8 characters, and masking never touches a
field name, a status or a number, so the output and the journal always load.
The ``echo_key`` fault makes the emulator quote the request's key upper-cased
(plus a lower-cased piece and the percent-encoded key in a detail).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from urllib.parse import quote

from stagedretry._journal import result_from_json
from stagedretry._redact import fold
from stagedretry.cli._exit import ExitCode

from ._corpus import INPUT, KEY, PLAN, Case, Ran, run_args

SCHEMA = '{"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}'
ECHO = '[[backend.emulator.faults]]\nkind = "echo_key"\nat = [1, 3]\n'
TOO_SHORT = r"warning: {name} holds {n} character\(s\), too short to be an API key"


def pipeline(*, backend: str = "emulator", faults: str = "", run: str = "") -> str:
    """A job over ``input.jsonl`` (5 items) with a JSON shape, on the in-process emulator
    (or, with ``backend="gemini"``, the corpus's emulator)."""
    if backend == "gemini":
        section = 'kind = "gemini"\nmodel = "gemini-2.5-flash"\nbase_url = "{emulator}"\n'
    else:
        section = (
            'kind = "emulator"\nmodel = "gemini-2.5-flash"\n\n'
            "[backend.emulator]\nseed = 1\ninvalid_rate = 0.0\ninvalid_rate_slope = 0.0\n\n"
            f"{faults}"
        )
    return (
        f'name = "hostile-secrets"\n{PLAN}\n[backend]\n{section}\n'
        '[input]\npath = "input.jsonl"\ntemplate = "Describe {title}."\n\n'
        '[output]\npath = "out/results.jsonl"\nschema = "title.schema.json"\n\n'
        '[journal]\npath = "out/journal.sqlite"\n\n'
        f"[run]\nconcurrency = 1\n{run}\n"
    )


def files(text: str) -> dict[str, str]:
    return {"pipeline.toml": text, "input.jsonl": INPUT, "title.schema.json": SCHEMA}


def _rows(ran: Ran) -> list[dict[str, object]]:
    text = (ran.folder / "out/results.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines()]


def _journal(ran: Ran) -> list[str]:
    db = sqlite3.connect(ran.folder / "out/journal.sqlite")
    try:
        return [r[0] for r in db.execute("SELECT result FROM results")]
    finally:
        db.close()


def _loads(ran: Ran, statuses: dict[str, int]) -> None:
    """Every journal row loads back and the output has one line per item, by status."""
    results = [result_from_json(json.loads(text)) for text in _journal(ran)]
    counted: dict[str, int] = {}
    for row in _rows(ran):
        counted[str(row["status"])] = counted.get(str(row["status"]), 0) + 1
    assert counted == statuses, counted
    assert sorted(r.status.value for r in results) == sorted(
        status for status, n in statuses.items() for _ in range(n)
    )


def _pieces_left(key: str, text: str) -> list[str]:
    """Pieces of 8 characters of *key* (any case; as is, percent- or JSON-escaped) in *text*."""
    low = fold(text)
    found = []
    for form in (key, quote(key, safe=""), json.dumps(key)[1:-1]):
        found += [form[i : i + 8] for i in range(len(form) - 7) if fold(form[i : i + 8]) in low]
    return found


def masked(key: str, *, failed: int) -> Callable[[Ran], None]:
    """The echoed key is nowhere: output, journal (raw and decoded), log file, request log,
    stdout, stderr; *failed* items carry the masked echo as their reason."""

    def check(ran: Ran) -> None:
        texts = {"stdout": ran.out, "stderr": ran.err}
        for name in ("out/results.jsonl", "out/run.log", "out/requests.jsonl"):
            path = ran.folder / name
            texts[name] = path.read_text("utf-8") if path.exists() else ""
        rows = _journal(ran)
        texts["journal"] = "\n".join(rows)
        texts["journal, decoded"] = "\n".join(str(json.loads(r)) for r in rows)
        for name, text in texts.items():
            assert _pieces_left(key, text) == [], name
        reasons = [str(row["reason"]) for row in _rows(ran) if row["status"] == "failed"]
        assert len(reasons) == failed, reasons
        # The marker is [redacted], or three of a character no form of the key holds.
        assert all(
            re.search(r"could not route caller (\[redacted\]|(\W)\2\2)\.", r) for r in reasons
        )
        _loads(ran, {"failed": failed, "succeeded": 5 - failed})

    return check


def completes(*, warnings: int) -> Callable[[Ran], None]:
    """All 5 items succeed, the journal loads, and *warnings* key warnings were printed."""

    def check(ran: Ran) -> None:
        assert ran.err.count("too short to be an API key") == warnings, ran.err
        _loads(ran, {"succeeded": 5})

    return check


def clean_run(ran: Ran, key: str) -> None:
    """All 5 items succeed and no file or stream holds a piece of *key*."""
    completes(warnings=0)(ran)
    texts = {"stdout": ran.out, "stderr": ran.err, "journal": "\n".join(_journal(ran))}
    for name in ("out/results.jsonl", "out/run.log", "out/requests.jsonl"):
        texts[name] = (ran.folder / name).read_text("utf-8")
    for name, text in texts.items():
        assert _pieces_left(key, text) == [], name


COLD = (
    "--set",
    "plan.stages[0].params.temperature=0",
    "--set",
    "plan.stages[1].params.temperature=0",
)
LOGGED = ("--log-file", "out/run.log", "--log-level", "debug")
REQUEST_LOG = 'request_log = "out/requests.jsonl"'


def echo_case(name: str, key: str) -> Case:
    """The emulator echoes *key* (upper-cased) for requests 1 and 3: both items fail, masked."""
    return Case(
        f"secrets-echo-{name}",
        run_args(*LOGGED),
        ExitCode.SOME_FAILED,
        files=files(pipeline(faults=ECHO, run=REQUEST_LOG)),
        env={"GEMINI_API_KEY": key},
        check=masked(key, failed=2),
    )


CASES = [
    # Too short to be a key: not searched (no "bloc[redacted]ed"), one warning, a whole run.
    Case(
        "secrets-short-key-completes",
        run_args(),
        ExitCode.OK,
        files=files(pipeline()),
        env={"GEMINI_API_KEY": "k"},
        stderr=TOO_SHORT.format(name="GEMINI_API_KEY", n=1),
        check=completes(warnings=1),
    ),
    Case(
        "secrets-short-google-key",
        run_args(),
        ExitCode.OK,
        files=files(pipeline()),
        env={"GOOGLE_API_KEY": "abc"},
        stderr=TOO_SHORT.format(name="GOOGLE_API_KEY", n=3),
        check=completes(warnings=1),
    ),
    Case(
        "secrets-key-is-status",
        run_args(),
        ExitCode.OK,
        files=files(pipeline()),
        env={"GEMINI_API_KEY": "status"},
        stderr=TOO_SHORT.format(name="GEMINI_API_KEY", n=6),
        check=completes(warnings=1),
    ),
    # Long enough to search, and equal to a status or a field name: the text is masked,
    # the structure never, so every line and row loads with its own status.
    Case(
        "secrets-key-is-succeeded",
        run_args(*LOGGED),
        ExitCode.OK,
        files=files(pipeline()),
        env={"GEMINI_API_KEY": "succeeded"},
        check=completes(warnings=0),
    ),
    Case(
        "secrets-key-is-a-field-name",
        run_args(*LOGGED),
        ExitCode.OK,
        files=files(pipeline()),
        env={"GEMINI_API_KEY": "finish_reason"},
        check=completes(warnings=0),
    ),
    Case(
        "secrets-key-is-attempts",
        run_args("--json"),
        ExitCode.OK,
        files=files(pipeline()),
        env={"GEMINI_API_KEY": "attempts"},
        check=completes(warnings=0),
    ),
    # The server quotes the key back: masked in any case, whatever characters it holds.
    echo_case("upper-cased", KEY),
    echo_case("regex-metacharacters", "a+b*c?(d)[e]{f}|g^h$i.j\\k"),
    echo_case("json-quote-and-backslash", 'se"cret\\key-1234'),
    echo_case("unicode", "clé-secrète-Ünïcode-42"),
    echo_case("the-marker-itself", "[redacted]-key-0001"),
    echo_case("exactly-8-characters", "abcdEFGH"),
    # The corpus's own emulator, wanting KEY: a normal run writes the key nowhere.
    Case(
        "secrets-gemini-backend-clean-run",
        run_args(*LOGGED, *COLD),
        ExitCode.OK,
        files=files(pipeline(backend="gemini", run=REQUEST_LOG)),
        env={"GEMINI_API_KEY": KEY},
        check=lambda ran: clean_run(ran, KEY),
    ),
    Case(
        "secrets-plan-check-short-key",
        ("plan", "check", "pipeline.toml"),
        ExitCode.OK,
        files=files(pipeline()),
        env={"GEMINI_API_KEY": "k"},
    ),
]
