"""The exit codes: one enum, documented on one page and in ``run --help``, none left out."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import stagedretry.cli._app as app_module
from stagedretry._plan import DEFAULT_TIMEOUT, MAX_BACKOFF, MAX_DEADLINE, MAX_TIMEOUT
from stagedretry.cli._exit import ExitCode
from stagedretry.cli.pipeline._model import MAX_RUN_DEADLINE
from strategies.backend import MAX_CACHE_TTL, MAX_WAIT

from .conftest import Invocation

DOCS = Path(__file__).resolve().parents[2] / "docs"
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*`(\w+)`\s*\|", re.MULTILINE)


def test_the_exit_codes_page_lists_exactly_the_enum() -> None:
    page = (DOCS / "reference/exit-codes.md").read_text("utf-8")
    documented = {int(code): name for code, name in ROW.findall(page)}
    assert documented == {int(code): code.name for code in ExitCode}


def test_the_page_is_in_the_site_navigation() -> None:
    nav = (DOCS.parent / "mkdocs.yml").read_text("utf-8")
    assert "reference/exit-codes.md" in nav
    assert "reference/limits.md" in nav


def test_run_help_and_the_app_docstring_name_every_code(cli: Callable[..., Invocation]) -> None:
    shown = cli("run", "--help", width=200)
    assert shown.code == 0
    docstring = app_module.__doc__ or ""
    for code in ExitCode:
        assert re.search(rf"^\s+{int(code)}\s+\S", shown.out, re.MULTILINE), code
        assert str(int(code)) in docstring, code


def test_signal_codes_follow_the_shell_convention() -> None:
    assert ExitCode.HANGUP == 129
    assert ExitCode.INTERRUPTED == 130
    assert ExitCode.TERMINATED == 143
    assert ExitCode.DEADLINE == 124  # as timeout(1)
    assert len(set(ExitCode)) == len(ExitCode.__members__)  # no two names share a code


def test_the_limits_page_gives_the_numbers_the_code_uses() -> None:
    page = (DOCS / "reference/limits.md").read_text("utf-8")
    assert f"**{DEFAULT_TIMEOUT:g} seconds**" in page
    assert (
        f"| `plan.timeout`, `plan.stages[i].timeout` | seconds per request | (0, {MAX_TIMEOUT:g}]"
        in page
    )
    assert f"| `plan.deadline` | seconds per item | (0, {MAX_DEADLINE:g}]" in page
    assert f"`initial`, `max` | seconds | (0, {MAX_BACKOFF:g}]" in page
    assert f"(0, {int(MAX_RUN_DEADLINE)}] (30 days)" in page
    assert f"(0, {int(MAX_CACHE_TTL)}] (7 days)" in page
    sim_waits = "`backend.sim.latency`, `backend.sim.retry_after`"
    assert f"| {sim_waits} | seconds | [0, {MAX_WAIT:g}]" in page
    assert f"| `backend.emulator.latency` | seconds per request | [0, {MAX_WAIT:g}]" in page
