"""Adversary's cases for issue 11's switch and caches commands (sections 1, 5 and 6).

A cache name given to ``caches delete`` is a resource name, never a path to build: an empty
one, ``..``, a query, a control character or a letter outside an id's is refused before
anything is sent (before: sent, and ``../../x`` reached another path of the endpoint).  A
gemini pipeline whose ``base_url`` is on loopback needs no key for ``run``; an endpoint there
that wants one stops the run (exit 3), and the placeholder sent is never shown.
"""

from __future__ import annotations

from stagedretry.cli._endpoint import LOOPBACK_KEY
from stagedretry.cli._exit import ExitCode

from ._corpus import INPUT, KEY, Case, Ran, gemini_pipeline, run_args

DEAD = "http://127.0.0.1:9"
SCHEMA = '{"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}'


def _nothing_sent(ran: Ran) -> None:
    """The check: refused as a usage error, the name shown without its control characters."""
    assert "\x1b" not in ran.out + ran.err
    assert "could not delete" not in ran.err


def _placeholder_unseen(ran: Ran) -> None:
    """The check: neither the placeholder nor the emulator's key is shown or written."""
    assert LOOPBACK_KEY not in ran.out + ran.err
    assert KEY not in ran.out + ran.err
    for path in ran.folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert LOOPBACK_KEY.encode() not in data, path
            assert KEY.encode() not in data, path


CASES = [
    *(
        Case(
            f"adv11a-caches-delete-name-{what}",
            ("caches", "delete", name, "--base-url", DEAD),
            ExitCode.USAGE,
            stderr=r"is not a cache name: give it as `caches list` prints it",
            check=_nothing_sent,
            timeout=20,
        )
        for what, name in (
            ("empty", ""),
            ("prefix-only", "cachedContents/"),
            ("dot-dot", "../../x"),
            ("dot-dot-after-prefix", "cachedContents/../../v1beta/models"),
            ("query", "cachedContents/abc?x=1"),
            ("escape", "abc\x1b[2J"),
            ("newline", "abc\ndef"),
            ("unicode", "caché"),
            ("space", "abc def"),
            ("huge", "a" * 10_000),
        )
    ),
    Case(
        "adv11a-caches-delete-one-bad-name-among-good-ones-sends-nothing",
        ("caches", "delete", "abc", "../x", "def", "--base-url", DEAD),
        ExitCode.USAGE,
        stderr=r"'\.\./x' is not a cache name",
        check=_nothing_sent,
        timeout=20,
    ),
    Case(
        "adv11a-caches-list-dead-port-bounded",
        ("caches", "list", "--base-url", DEAD),
        ExitCode.SOME_FAILED,
        stderr=r"listing the caches failed: .*refused",
        timeout=20,
    ),
    Case(
        "adv11a-run-loopback-no-key-emulator-wants-one",
        run_args(),
        ExitCode.RUN_STOPPED,
        files={
            "pipeline.toml": gemini_pipeline().replace(
                '[output]\npath = "out/results.jsonl"\n',
                '[output]\npath = "out/results.jsonl"\nschema = "schema.json"\n',
            ),
            "input.jsonl": INPUT,
            "schema.json": SCHEMA,
        },
        stderr=r"the API key was rejected",
        check=_placeholder_unseen,
        timeout=60,
    ),
]
