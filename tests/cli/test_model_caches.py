"""A pipeline whose last stage escalates to gemini-2.5-pro: the pro stage gets a pro cache
when it pays, and the summary says which stages ran without a cache and why.

The issue's example is the bundled demo with a ladder ``full_t0 -> full_pro``: before, the
54 billed pro requests carried the 2,111 instruction tokens inline at the full price
(0 of their 118,024 input tokens cached), silently.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import pytest

from strategies.gemini.emulator import GeminiEmulator

from .conftest import Invocation

PRO = "gemini-2.5-pro"
KEY = "AIzaSyTest-0123456789-abcdefghijklmnop"

ESCALATING = f"""
[plan]
max_prompts = 2
backoff = {{ initial = 0.001, max = 0.01 }}

[[plan.stages]]
name = "full_t0"
kind = "full"
params = {{ temperature = 0.0 }}

[[plan.stages]]
name = "full_pro"
kind = "full"
params = {{ temperature = 0.0, model = "{PRO}" }}
"""

SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "author": {"type": "string"}},
    "required": ["title", "author"],
}


def demo_with_a_pro_stage(folder: Path) -> Path:
    """The bundled demo pipeline, its plan replaced by ``full_t0 -> full_pro``."""
    demo = resources.files("stagedretry.demo")
    folder.mkdir(parents=True)
    for name in ("pipeline.toml", "books.jsonl", "instructions.md"):
        with resources.as_file(demo / name) as source:
            shutil.copy(source, folder / name)
    path = folder / "pipeline.toml"
    text = path.read_text("utf-8")
    start, end = text.index("[plan]"), text.index("[backend]\n")
    path.write_text(text[:start] + ESCALATING.lstrip() + "\n" + text[end:], "utf-8")
    return path


def stage(summary: dict[str, object], name: str) -> dict[str, object]:
    stages = summary["stages"]
    assert isinstance(stages, list)
    (found,) = [s for s in stages if s["name"] == name]
    assert isinstance(found, dict)
    return found


def test_the_demo_escalating_to_pro_reads_a_pro_cache(
    tmp_path: Path, cli: Callable[..., Invocation]
) -> None:
    pipeline = demo_with_a_pro_stage(tmp_path / "demo")
    # The demo's 10 ms per request only slows the test down: the figures do not move.
    done = cli("run", str(pipeline), "--json", "--set", "backend.emulator.latency=0")
    assert done.code in (0, 1), done.err
    summary = done.json()
    pro = stage(summary, "full_pro")
    tokens = pro["tokens"]
    assert isinstance(tokens, dict)
    assert pro["attempts"] >= 20
    # Every billed pro request read the 2,111 instruction tokens from a pro cache.
    assert tokens["cached"] > 0.9 * tokens["input"]
    assert summary["uncached_stages"] == []
    assert summary["cache"]["created"] == 2  # one per model
    assert summary["cache"]["deleted"] == 2  # on_close = "delete": both


def emulator_job(folder: Path, *, items: int, emulator: str, cache: str) -> Path:
    folder.mkdir(parents=True)
    rows = [{"id": f"b{n}", "title": f"Title {n}"} for n in range(items)]
    (folder / "input.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    (folder / "rules.md").write_text("Answer as a careful librarian would. " * 200, "utf-8")
    (folder / "schema.json").write_text(json.dumps(SCHEMA), "utf-8")
    text = (
        f'name = "pro-job"\n{ESCALATING}\n'
        f'[backend]\nkind = "emulator"\nmodel = "gemini-2.5-flash"\n\n'
        f"[backend.emulator]\nseed = 3\n{emulator}\n\n"
        f'[cache]\nsystem_instruction = "rules.md"\n{cache}\n\n'
        f'[input]\npath = "input.jsonl"\ntemplate = "Catalogue {{title}}."\n\n'
        f'[output]\npath = "out.jsonl"\nschema = "schema.json"\n\n'
        f"[run]\nconcurrency = 2\n"
    )
    path = folder / "pipeline.toml"
    path.write_text(text, "utf-8")
    return path


def test_a_pro_cache_that_does_not_pay_is_not_made_and_the_summary_says_why(
    tmp_path: Path, cli: Callable[..., Invocation]
) -> None:
    # Three items, every flash answer invalid, the cache kept an hour: a pro cache would
    # cost more (creation and an hour's storage) than three inline requests.
    pipeline = emulator_job(
        tmp_path / "job", items=3, emulator="invalid_rate = 1.0", cache='on_close = "keep"'
    )
    done = cli("run", str(pipeline), "--json")
    summary = done.json()
    assert stage(summary, "full_pro")["tokens"]["cached"] == 0  # type: ignore[index]
    (row,) = summary["uncached_stages"]
    assert (row["stage"], row["model"]) == ("full_pro", PRO)
    assert row["reason"].endswith("cached")
    assert " inline vs $" in row["reason"]
    assert summary["cache"]["created"] == 1
    human = cli("run", str(pipeline), "--fresh", width=200)
    assert f"stage full_pro ({PRO}): no cache, " in human.out
    assert row["reason"] in human.out


def test_a_cache_below_the_models_minimum_is_named_in_the_summary(
    tmp_path: Path, cli: Callable[..., Invocation]
) -> None:
    pipeline = emulator_job(
        tmp_path / "job",
        items=2,
        emulator="invalid_rate = 0.0\nmin_cache_tokens = 5000",
        cache="",
    )
    summary = cli("run", str(pipeline), "--json").json()
    assert summary["uncached_stages"] == [
        {
            "stage": "full_t0",
            "model": "gemini-2.5-flash",
            "reason": "below the model's minimum of 5000 tokens",
        }
    ]


@pytest.fixture
def keyed_emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator(seed=4, invalid_rate=1.0, api_key=KEY) as emu:
        yield emu


def test_caches_list_marks_and_delete_removes_the_caches_of_every_model(
    tmp_path: Path,
    cli: Callable[..., Invocation],
    keyed_emulator: GeminiEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    pipeline = emulator_job(tmp_path / "job", items=20, emulator="", cache="")
    text = pipeline.read_text("utf-8").replace(
        'kind = "emulator"', f'kind = "gemini"\nbase_url = "{keyed_emulator.base_url}"'
    )
    pipeline.write_text(text.replace("[backend.emulator]\nseed = 3\n", ""), "utf-8")
    done = cli("run", str(pipeline), "--json")
    assert done.json()["uncached_stages"] == [], done.err
    rows = cli("caches", "list", "--pipeline", str(pipeline), "--json").json()
    assert sorted((r["model"], r["matches_pipeline"]) for r in rows) == [
        ("models/gemini-2.5-flash", True),
        (f"models/{PRO}", True),
    ]
    human = cli("caches", "list", "--pipeline", str(pipeline))
    assert f"model models/{PRO}" in human.out
    deleted = cli("caches", "delete", "--all-matching", str(pipeline))
    assert deleted.out.count("deleted cachedContents/") == 2
    assert keyed_emulator.cache_names() == ()


def test_a_job_without_cache_and_no_pro_stage_reached_lists_nothing(
    tmp_path: Path, cli: Callable[..., Invocation]
) -> None:
    pipeline = emulator_job(tmp_path / "job", items=2, emulator="invalid_rate = 0.0", cache="")
    summary = cli("run", str(pipeline), "--json").json()
    assert stage(summary, "full_pro")["attempts"] == 0
    assert summary["uncached_stages"] == []
