"""``stagedretry estimate``: the expected bill and time, with no request sent to the service."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagedretry.cli._app import demo_pipeline_path
from stagedretry.cli._estimate import DEFAULT_REQUESTS_PER_ITEM, under_quota
from stagedretry.cli._exit import ExitCode
from strategies.gemini.emulator import GeminiEmulator

from .conftest import Invocation, Job, on_gemini

Cli = Callable[..., Invocation]
KEY = "AIzaSyCounting-0123456789-abcdefghijklm"
SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "author": {"type": "string"}},
    "required": ["title", "author"],
}


@pytest.fixture
def counting() -> Iterator[GeminiEmulator]:
    """A Gemini service that counts every request it is sent (there must be none)."""
    with GeminiEmulator(seed=1, api_key=KEY) as emu:
        yield emu


def test_the_estimate_of_a_gemini_job_sends_no_request(
    make_job: Callable[..., Job],
    cli: Cli,
    counting: GeminiEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    job = on_gemini(make_job(items=40, sim=""), counting.base_url, schema=SCHEMA)
    ran = cli("estimate", str(job.pipeline), "--sample", "5", "--json")
    assert ran.code == ExitCode.OK, ran.err
    assert len(counting.ledger.requests) == 0
    data = ran.json()
    assert data["items"] == 40
    assert data["mix"]["source"] == "a sample of 5 items run on the emulator"
    assert data["cost"]["with_cache"] > 0
    assert data["requests"] >= 40
    # Nothing of the job is written.
    assert not job.output.exists()
    assert not job.journal.exists()
    # The same pipeline run for real does reach the service, which counts it.
    assert cli("run", str(job.pipeline), "--no-progress", "--no-report").code == ExitCode.OK
    assert len(counting.ledger.requests) >= 40


def test_the_estimate_with_no_sample_uses_the_documented_defaults(
    make_job: Callable[..., Job], cli: Cli
) -> None:
    job = make_job(items=40)
    data = cli("estimate", str(job.pipeline), "--sample", "0", "--json").json()
    assert data["mix"]["source"] == "the documented defaults (--sample 0)"
    assert data["requests"] == round(40 * DEFAULT_REQUESTS_PER_ITEM)
    # Every prompt counted locally: "Describe Title n by Author m." is 7 tokens.
    assert data["prompt_tokens"] == 40 * 7
    assert data["seconds"] is None


def test_the_time_is_the_slowest_limit_of_the_quota(make_job: Callable[..., Job], cli: Cli) -> None:
    job = make_job(items=120)
    data = cli("estimate", str(job.pipeline), "--sample", "0", "--rpm", "60", "--json").json()
    assert data["seconds"] == pytest.approx(120 * DEFAULT_REQUESTS_PER_ITEM, abs=0.1)
    assert data["quota"] == {"rpm": 60}
    tight = cli(
        "estimate", str(job.pipeline), "--sample", "0", "--rpm", "60", "--tpm", "10", "--json"
    ).json()
    assert tight["seconds"] == pytest.approx(tight["tokens"]["input"] / 10 * 60, abs=0.1)


def test_an_estimate_of_a_bad_pipeline_names_the_place(
    make_job: Callable[..., Job], cli: Cli
) -> None:
    job = make_job(items=2)
    ran = cli("estimate", str(job.pipeline), "--set", "run.max_tokens=0")
    assert ran.code == ExitCode.USAGE
    assert "run.max_tokens" in ran.err
    missing = cli("estimate", str(job.folder / "nope.toml"))
    assert missing.code == ExitCode.USAGE


def test_the_estimate_of_the_demo_lands_within_25_percent_of_its_measured_bill(
    cli: Cli, tmp_path: Path
) -> None:
    with demo_pipeline_path() as path:
        estimated = cli("estimate", str(path), "--json")
    assert estimated.code == ExitCode.OK, estimated.err
    ran = cli("demo", "--dir", str(tmp_path), "--json", "--no-progress", "--no-report")
    assert ran.code in (ExitCode.OK, ExitCode.SOME_FAILED)
    expected = estimated.json()["cost"]["with_cache"]
    measured = ran.json()["cost"]["with_cache"]
    assert expected == pytest.approx(measured, rel=0.25)
    # The demo needs no price table: its prices are genai-prices' own.
    assert ran.json()["cost"]["price_sources"]["input"].startswith("genai-prices ")


@given(
    st.floats(min_value=0, max_value=1e7),
    st.floats(min_value=0, max_value=1e9),
    st.dictionaries(
        st.sampled_from(["rpm", "tpm", "rpd"]), st.integers(min_value=1, max_value=10**7)
    ),
)
def test_under_quota_is_the_slowest_single_limit(
    requests: float, tokens: float, quota: dict[str, int]
) -> None:
    seconds = under_quota(requests, tokens, quota)
    alone = [0.0]
    for key, value in quota.items():
        alone.append(under_quota(requests, tokens, {key: value}))
    assert seconds == max(alone)
    if "rpm" in quota:
        assert seconds >= requests / quota["rpm"] * 60
    if "rpd" in quota and requests > quota["rpd"]:
        assert seconds >= (math.ceil(requests / quota["rpd"]) - 1) * 86400
