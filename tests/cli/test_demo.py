"""``stagedretry demo``: the bundled example, with no key and no network, shows the cache."""

from __future__ import annotations

import io
import json
import subprocess
from importlib import resources
from pathlib import Path

from stagedretry.demo import _generate
from stagedretry.demo.model import Book

from .conftest import command


def test_demo_in_a_subprocess_exits_0_with_one_cache_and_a_high_cached_share(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    done = subprocess.run(
        command("demo", "--dir", str(tmp_path / "demo"), "--json"),
        capture_output=True,
        cwd=tmp_path,
        env=subprocess_env,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["items"]["total"] == 300
    assert summary["items"]["succeeded"] == 300
    assert summary["cache"]["created"] == 1
    assert summary["cached_share"] > 0.70
    # The injected faults were met and dealt with.
    outcomes: dict[str, int] = {}
    for stage in summary["stages"]:
        for kind, count in stage["outcomes"].items():
            outcomes[kind] = outcomes.get(kind, 0) + count
    assert outcomes.get("rate_limited", 0) > 0
    assert outcomes.get("transient", 0) > 0
    assert outcomes.get("invalid", 0) > 0
    assert summary["cost"]["with_cache"] < summary["cost"]["without_cache"]
    lines = (tmp_path / "demo" / "books.out.jsonl").read_text("utf-8").splitlines()
    assert len(lines) == 300
    for line in lines:
        Book.model_validate(json.loads(line)["output"])


def test_the_shipped_records_are_what_the_generator_writes() -> None:
    out = io.StringIO()
    _generate.write(out)
    shipped = resources.files("stagedretry.demo").joinpath("books.jsonl").read_text("utf-8")
    assert out.getvalue() == shipped
    assert len(shipped.splitlines()) == _generate.COUNT


def test_the_demo_instruction_is_long_enough_to_be_worth_caching() -> None:
    from strategies.gemini.emulator import count_tokens

    text = resources.files("stagedretry.demo").joinpath("instructions.md").read_text("utf-8")
    assert count_tokens(text) >= 1500
