"""Switching backends, and the caches commands' endpoint: what a user gets wrong on the way.

Another backend's table left in ``[backend]`` is a warning, once; a ``--base-url`` that is not
an http(s) URL is a usage error before anything is sent; no key is needed on loopback, and an
endpoint that wants one says that none was set.
"""

from __future__ import annotations

from stagedretry.cli._exit import ExitCode

from ._corpus import INPUT, KEY, PLAN, Case, Ran, run_args

SCHEMA = '{"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}'
WARNING = r"warning: pipeline\.toml: backend\.emulator: settings for the emulator backend, ignored"
EMULATOR_TABLES = (
    "\n[backend.emulator]\nseed = 1\ninvalid_rate = 0.0\ninvalid_rate_slope = 0.0\n"
    '\n[[backend.emulator.faults]]\nkind = "unavailable"\nrate = 0.5\n'
)


# At temperature 0 the corpus's emulator answers every item validly: a run that fails one
# would be a regression, not luck.
ZERO = "\nparams = { temperature = 0.0 }\n"
PLAN_AT_ZERO = PLAN.replace('"full_t0"\n', '"full_t0"' + ZERO).replace(
    '"partial_t0"\n', '"partial_t0"' + ZERO
)


def _pipeline(backend: str) -> str:
    return (
        f'name = "switch"\n{PLAN_AT_ZERO}\n[backend]\n{backend}\n'
        '[input]\npath = "input.jsonl"\ntemplate = "Describe {title}."\n\n'
        '[output]\npath = "out/results.jsonl"\nschema = "schema.json"\n\n'
        '[journal]\npath = "out/journal.sqlite"\n\n[run]\nconcurrency = 2\n'
    )


def _files(backend: str) -> dict[str, str]:
    return {"pipeline.toml": _pipeline(backend), "input.jsonl": INPUT, "schema.json": SCHEMA}


EMULATOR = 'kind = "emulator"\nmodel = "gemini-2.5-flash"\n' + EMULATOR_TABLES
SWITCHED = 'kind = "gemini"\nmodel = "gemini-2.5-flash"\nbase_url = "{emulator}"\n' + (
    EMULATOR_TABLES.replace("seed = 1", 'seed = "not a number"\nno_such_knob = true')
)


def _warned_once(ran: Ran) -> None:
    """The check: one warning, and it names the table, not its (unread) values."""
    assert ran.err.count("warning:") == 1, ran.err
    assert "no_such_knob" not in ran.err
    assert KEY not in ran.out + ran.err


def _stopped_at_first_name(ran: Ran) -> None:
    """The check: the refused placeholder stops ``caches delete`` at its first name."""
    assert ran.err.count("could not delete") == 1, ran.err


def _no_control_characters(ran: Ran) -> None:
    assert not any((c < " " and c != "\n") or "\x7f" <= c <= "\x9f" for c in ran.err), ran.err


CASES = [
    Case(
        "switch-gemini-beside-unread-emulator-tables",
        run_args(),
        ExitCode.OK,
        files=_files(SWITCHED),
        env={"GEMINI_API_KEY": KEY},
        stderr=WARNING + r" because kind is 'gemini'",
        check=_warned_once,
    ),
    Case(
        "switch-gemini-key-from-google-api-key",
        run_args(),
        ExitCode.OK,
        files=_files(SWITCHED),
        env={"GOOGLE_API_KEY": KEY},
        check=_warned_once,
    ),
    Case(
        "switch-plan-check-switched-without-key",
        ("plan", "check", "pipeline.toml"),
        ExitCode.OK,
        files=_files(SWITCHED),
        stderr=WARNING,
        check=_warned_once,
    ),
    Case(
        "switch-backend-flag-gemini-without-key",
        run_args("--backend", "gemini"),
        ExitCode.USAGE,
        files=_files(EMULATOR),
        stderr=WARNING + r".*error: the gemini backend needs an API key in the GEMINI_API_KEY",
        check=_warned_once,
    ),
    Case(
        "switch-backend-flag-gemini-with-base-url",
        run_args("--backend", "gemini", "--set", "backend.base_url={emulator}"),
        ExitCode.OK,
        files=_files(EMULATOR),
        env={"GEMINI_API_KEY": KEY},
        stderr=WARNING,
        check=_warned_once,
    ),
    Case(
        "switch-backend-flag-sim",
        run_args("--backend", "sim", "--set", "backend.sim.invalid_rate=0"),
        ExitCode.OK,
        files=_files(EMULATOR),
        stderr=WARNING + r" because kind is 'sim'",
        check=_warned_once,
    ),
    Case(
        "switch-table-of-no-backend-refused",
        run_args(),
        ExitCode.USAGE,
        files=_files(EMULATOR + '\n[backend."\\u001b]0;x\\u0007vertexx"]\nproject = 1\n'),
        stderr=r"backend\.\\x1b\]0;x\\x07vertexx: unknown key",
        check=_no_control_characters,
    ),
    Case(
        "switch-caches-list-google-without-key",
        ("caches", "list"),
        ExitCode.USAGE,
        stderr=r"needs an API key in the GEMINI_API_KEY environment variable .*loopback",
    ),
    Case(
        "switch-caches-list-loopback-wants-a-key",
        ("caches", "list", "--base-url", "{emulator}"),
        ExitCode.RUN_STOPPED,
        stderr=r"the API key was rejected.*no key was set: put the key this endpoint wants",
        timeout=30,
    ),
    Case(
        "switch-caches-delete-loopback-wants-a-key",
        ("caches", "delete", "abc", "def", "--base-url", "{emulator}"),
        ExitCode.RUN_STOPPED,
        stderr=r"could not delete cachedContents/abc: the API key was rejected.*no key was set",
        check=_stopped_at_first_name,
        timeout=30,
    ),
    *(
        Case(
            f"switch-caches-{command}-base-url-{what}",
            ("caches", command, *names, "--base-url", url),
            ExitCode.USAGE,
            env={"GEMINI_API_KEY": KEY},
            stderr=r"Invalid value for '--base-url': expected an http\(s\) URL",
            check=_no_control_characters,
        )
        for what, url in (
            ("ftp", "ftp://127.0.0.1:9"),
            ("port-out-of-range", "http://127.0.0.1:99999"),
            ("no-host", "https://"),
            ("escapes", "http://\x1b[2J\x07/"),
        )
        for command, names in (("list", ()), ("delete", ("abc",)))
    ),
]
