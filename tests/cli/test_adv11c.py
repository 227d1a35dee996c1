"""Issue 11 §4 tried as an adversary: the job's ceilings and its estimate in the cases the
first tests did not reach (a ``--retry`` run, a per-model quota)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stagedretry import Journal, Usage
from stagedretry.cli._exit import ExitCode
from stagedretry.cli.pipeline import load_pipeline
from strategies.gemini.emulator import Api, GeminiEmulator

from .conftest import Invocation, Job, on_gemini

Cli = Callable[..., Invocation]
RUN = ("--json", "--no-progress", "--no-report")


def _paid_tokens(job: Job) -> int:
    """Every token the journal says the job paid for: each item's every result, replaced
    ones included."""
    pipeline = load_pipeline(job.pipeline)
    with Journal(job.journal, pipeline.fingerprint) as journal:
        ids = [e.result.id for e in journal.entries()]
        usage = sum(
            (a.usage for i in ids for e in journal.history(i) for a in e.result.attempts),
            Usage(),
        )
    return usage.total_tokens


def test_a_retry_run_counts_what_the_retried_items_already_spent(
    make_job: Callable[..., Job], cli: Cli
) -> None:
    job = make_job(items=30, sim="seed = 3\ninvalid_rate = 0.9", run="concurrency = 2")
    first = cli("run", str(job.pipeline), *RUN)
    assert first.code == ExitCode.SOME_FAILED
    spent = _paid_tokens(job)
    assert first.json()["items"]["exhausted"] > 0
    # The job has spent its ceiling already: a retry of its failures must send nothing.
    retry = ("--retry", "failed,exhausted")
    again = cli("run", str(job.pipeline), *RUN, *retry, "--set", f"run.max_tokens={spent}")
    assert again.code == ExitCode.RUN_STOPPED, again.out
    assert sum(again.json()["this_run"].values()) == 0
    assert f"({spent:,} tokens spent)" in again.json()["run_failure"]
    # A retry with room goes on; what it spends replaces results, which stay paid for.
    raised = cli("run", str(job.pipeline), *RUN, *retry, "--set", f"run.max_tokens={spent * 10}")
    assert sum(raised.json()["this_run"].values()) > 0
    total = _paid_tokens(job)
    assert total > spent
    third = cli("run", str(job.pipeline), *RUN, *retry, "--set", f"run.max_tokens={total}")
    assert third.code == ExitCode.RUN_STOPPED, third.out
    assert sum(third.json()["this_run"].values()) == 0
    assert f"({total:,} tokens spent)" in third.json()["run_failure"]


def test_a_retry_with_another_model_counts_each_earlier_result_once(
    make_job: Callable[..., Job], cli: Cli
) -> None:
    job = make_job(items=30, sim="seed = 5\ninvalid_rate = 0.6", run="concurrency = 2")
    first = cli("run", str(job.pipeline), *RUN)
    data = first.json()
    assert 0 < data["items"]["exhausted"] < 30  # some keep their result, adopted by the retry
    t = data["tokens"]
    spent = t["input"] + t["output"] + t["thinking"]
    # Another model is another fingerprint: the kept results are copied under it, and the
    # retried ones stay under the first; neither is forgotten, neither counted twice.
    for ceiling, code in ((spent, ExitCode.RUN_STOPPED), (spent + 1, None)):
        ran = cli(
            "run", str(job.pipeline), *RUN, "--retry", "exhausted", "--model", "other-model",
            "--set", f"run.max_tokens={ceiling}",
        )  # fmt: skip
        if code is not None:
            assert ran.code == code, ran.out
            assert sum(ran.json()["this_run"].values()) == 0
            assert f"({spent:,} tokens spent)" in ran.json()["run_failure"]
        else:
            assert sum(ran.json()["this_run"].values()) > 0


KEY = "AIzaSyAdv11c-0123456789-abcdefghijklmnop"
SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "author": {"type": "string"}},
    "required": ["title", "author"],
}
MODEL = "gemini-2.5-flash"


@pytest.fixture
def counting() -> Iterator[GeminiEmulator]:
    """A Gemini service that counts every request it is sent (there must be none)."""
    with GeminiEmulator(seed=1, api_key=KEY) as emu:
        yield emu


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        # The pipeline's model has its own limits: they replace the table's.
        (f'[backend.quota.models."{MODEL}"]\nrpm = 10\n', {"rpm": 10, "tpm": 10**6}),
        (f'[backend.quota.models."models/{MODEL}"]\ntpm = 500\n', {"rpm": 1000, "tpm": 500}),
        # Another model's limits do not apply to this one.
        ('[backend.quota.models."gemini-2.5-pro"]\nrpm = 1\n', {"rpm": 1000, "tpm": 10**6}),
    ],
)
def test_the_estimate_times_the_job_under_its_models_own_quota(
    make_job: Callable[..., Job],
    cli: Cli,
    counting: GeminiEmulator,
    monkeypatch: pytest.MonkeyPatch,
    models: str,
    expected: dict[str, int],
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    quota = f"[backend.quota]\nrpm = 1000\ntpm = 1_000_000\n\n{models}"
    job = make_job(items=60, sim="", extra=quota)
    job = on_gemini(job, counting.base_url, schema=SCHEMA, model=MODEL)
    ran = cli("estimate", str(job.pipeline), "--sample", "0", "--json")
    assert ran.code == ExitCode.OK, ran.err
    data = ran.json()
    assert data["quota"] == expected
    pace = max(data["requests"] / expected["rpm"], data["tokens"]["input"] / expected["tpm"])
    assert data["seconds"] == pytest.approx(pace * 60, abs=0.1)
    assert len(counting.ledger.requests) == 0


def test_the_estimate_of_a_vertex_job_needs_no_credentials_and_sends_nothing(
    make_job: Callable[..., Job], cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # No credentials to be found: the estimate must not look for them.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    quota = f'[backend.quota]\nrpm = 1000\n\n[backend.quota.models."{MODEL}"]\nrpm = 30\n'
    with GeminiEmulator(seed=1, api=Api.VERTEX) as vertex:
        job = on_gemini(make_job(items=30, sim="", extra=quota), vertex.base_url, schema=SCHEMA)
        text = job.pipeline.read_text("utf-8").replace(
            'kind = "gemini"\n',
            f'kind = "vertex"\nmodel = "{MODEL}"\nproject = "my-project-123"\n'
            'location = "us-central1"\n',
        )
        job.pipeline.write_text(text, "utf-8")
        ran = cli("estimate", str(job.pipeline), "--sample", "4", "--json")
        assert ran.code == ExitCode.OK, ran.err
        assert len(vertex.ledger.requests) == 0
    data = ran.json()
    assert data["mix"]["source"] == "a sample of 4 items run on the emulator"
    assert data["quota"] == {"rpm": 30}
    assert data["seconds"] == pytest.approx(data["requests"] / 30 * 60, abs=0.1)
    assert data["cost"]["price_sources"]["input"].startswith("genai-prices ")


PRICE = "{input = 3.0, cached_input = 0.3, output = 25.0}"


@pytest.mark.parametrize("key", [f"models/{MODEL}", MODEL])
def test_a_price_table_named_as_the_model_is_named_elsewhere_is_used(
    make_job: Callable[..., Job], cli: Cli, key: str
) -> None:
    # backend.model may carry the API's "models/" prefix; so may the [prices] key.
    job = make_job(items=10)
    ran = cli(
        "estimate", str(job.pipeline), "--sample", "0", "--json", "--model", MODEL,
        "--set", f'prices."{key}"={PRICE}',
    )  # fmt: skip
    assert ran.code == ExitCode.OK, ran.err
    cost = ran.json()["cost"]
    assert cost["price_sources"]["input"] == "the pipeline's [prices] table"
    assert "warning" not in ran.err


@pytest.mark.parametrize("command", ["estimate", "run", "plan check"])
def test_a_price_table_for_no_model_the_job_runs_is_named_in_a_warning(
    make_job: Callable[..., Job], cli: Cli, command: str
) -> None:
    # A typo in the table's model would otherwise be ignored in silence, the job priced at
    # genai-prices' numbers while its owner believes their own are used.
    job = make_job(items=3)
    ran = cli(
        *command.split(), str(job.pipeline), "--set", f"backend.model={MODEL}",
        "--set", f'prices."gemini-2.5-flsh"={PRICE}',
    )  # fmt: skip
    assert ran.code in (ExitCode.OK, ExitCode.SOME_FAILED), ran.err
    assert ran.err.count("warning: ") == 1, ran.err
    assert (
        "pipeline.toml: prices: no entry for the model 'gemini-2.5-flash' (the table has "
        "'gemini-2.5-flsh'), so its prices come from genai-prices" in " ".join(ran.err.split())
    )


def test_a_price_table_named_both_ways_is_refused(make_job: Callable[..., Job], cli: Cli) -> None:
    job = make_job(items=3)
    ran = cli(
        "estimate", str(job.pipeline), "--model", MODEL,
        "--set", f'prices."{MODEL}"={PRICE}', "--set", f'prices."models/{MODEL}"={PRICE}',
    )  # fmt: skip
    assert ran.code == ExitCode.USAGE
    assert f'prices."models/{MODEL}": the model {MODEL!r} has a price already' in ran.err


def _emulator_job(make_job: Callable[..., Job], items: int, backend: str) -> Job:
    job = make_job(items=items, sim="", run="concurrency = 4")
    (job.folder / "output.schema.json").write_text(json.dumps(SCHEMA), "utf-8")
    text = (
        job.pipeline.read_text("utf-8")
        .replace('kind = "sim"\n\n[backend.sim]\n', f'kind = "emulator"\n{backend}\n')
        .replace(
            '[output]\npath = "out/results.jsonl"',
            '[output]\npath = "out/results.jsonl"\nschema = "output.schema.json"',
        )
    )
    job.pipeline.write_text(text, "utf-8")
    return job


@pytest.mark.parametrize(
    "quota",
    [
        # The client's pace: a sample of 8 at 6 a minute took over a minute.
        "[backend.quota]\nrpm = 6\n",
        # The client's day: spent after 2 requests, the sample stopped, the mix 0.2 requests
        # an item (a bill a fifth of the real one).
        "[backend.quota]\nrpd = 2\n",
        # The emulator's own quotas, answered with 429s: waited on, or a stop.
        "[backend.emulator.quota]\nrpm = 6\n",
        "[backend.emulator.quota]\nrpd = 2\n",
    ],
)
def test_the_sample_is_neither_paced_nor_stopped_by_a_quota(
    make_job: Callable[..., Job], cli: Cli, quota: str
) -> None:
    job = _emulator_job(
        make_job, 40, f"\n[backend.emulator]\nseed = 3\ninvalid_rate = 0.0\nlatency = 0\n\n{quota}"
    )
    started = time.monotonic()
    ran = cli("estimate", str(job.pipeline), "--sample", "8", "--json")
    assert time.monotonic() - started < 20
    assert ran.code == ExitCode.OK, ran.err
    data = ran.json()
    assert data["mix"]["source"] == "a sample of 8 items run on its own backend"
    # Every item of a valid-answer sample is one request: one billed request an item.
    assert data["mix"]["requests_per_item"] == 1.0
    assert data["requests"] == 40
    if quota.startswith("[backend.quota]\nrpm"):
        assert data["quota"] == {"rpm": 6}
        assert data["seconds"] == pytest.approx(40 / 6 * 60, abs=0.1)


def test_a_sample_cut_short_by_a_stop_counts_only_the_items_it_finished(
    make_job: Callable[..., Job], cli: Cli
) -> None:
    # A spending cap from the 5th request on stops the sample: the items it cut short were
    # refused, not billed, and are no measure of what an item costs (before: counted, the
    # mix 0.5 requests an item).
    job = _emulator_job(
        make_job,
        40,
        "\n[backend.emulator]\nseed = 3\ninvalid_rate = 0.0\nlatency = 0\n\n"
        '[[backend.emulator.faults]]\nkind = "spend_cap"\nat = [5, 6, 7, 8, 9, 10, 11, 12]\n',
    )
    ran = cli("estimate", str(job.pipeline), "--sample", "8", "--json", "--concurrency", "1")
    assert ran.code == ExitCode.OK, ran.err
    data = ran.json()
    assert data["mix"]["requests_per_item"] == 1.0
    assert data["mix"]["source"] == (
        "a sample of 4 items run on its own backend (the sample stopped early on a failure "
        "of the run; its other 4 items are not counted)"
    )


def test_a_day_quota_spreads_the_job_over_days_without_storing_the_cache_between_them(
    make_job: Callable[..., Job], cli: Cli
) -> None:
    # 40 requests at 10 a day: four daily runs, each a few seconds at 600 a minute.  The
    # cache is deleted as each run ends (on_close = "delete") and made again the next day;
    # it is not stored through the nights (before: 72 hours of storage, the bill 50x).
    job = _emulator_job(make_job, 40, "\n[backend.emulator]\nseed = 3\ninvalid_rate = 0.0\n")
    (job.folder / "rules.md").write_text("Answer as a careful librarian would. " * 300, "utf-8")
    with job.pipeline.open("a", encoding="utf-8") as file:
        file.write('\n[cache]\nsystem_instruction = "rules.md"\non_close = "delete"\n')
    args = ("estimate", str(job.pipeline), "--sample", "0", "--json", "--model", MODEL)
    one_day = cli(*args, "--rpm", "600").json()
    days = cli(*args, "--rpm", "600", "--rpd", "10").json()
    assert days["requests"] == 50  # 1.25 an item, the documented default
    assert days["seconds"] >= 4 * 86400
    # Five daily runs, each creating the cache once and storing it for its own few seconds.
    assert days["cost"]["parts"]["cache_creation"] == pytest.approx(
        5 * one_day["cost"]["parts"]["cache_creation"], rel=1e-3
    )
    assert days["cost"]["storage_hours"] == pytest.approx(
        one_day["cost"]["storage_hours"], abs=0.01
    )
    assert days["cost"]["storage_hours"] < 0.1


def test_the_estimate_says_which_ceiling_the_job_would_reach(
    make_job: Callable[..., Job], cli: Cli
) -> None:
    job = make_job(items=40)
    args = ("estimate", str(job.pipeline), "--sample", "0", "--json", "--model", MODEL)
    free = cli(*args).json()
    assert free["ceilings"] == []
    tokens = free["tokens"]["input"] + free["tokens"]["output"]
    bill = free["cost"]["with_cache"]
    capped = cli(
        *args, "--set", f"run.max_tokens={tokens // 4}", "--set", f"run.max_cost_usd={bill / 2}"
    ).json()
    assert capped["ceilings"] == [
        f"the expected {tokens:,} tokens reach run.max_tokens={tokens // 4:,}: the run would "
        "stop after about 25% of the items",
        f"the expected bill ${bill:,.4f} reaches run.max_cost_usd={bill / 2:g}: the run would "
        "stop after about 50% of the items",
    ]
    # Ceilings above the expected spend say nothing.
    roomy = cli(*args, "--set", f"run.max_tokens={tokens * 2}").json()
    assert roomy["ceilings"] == []


def test_the_report_of_a_model_with_no_price_says_where_none_was_found(
    make_job: Callable[..., Job], cli: Cli
) -> None:
    job = make_job(items=4)
    ran = cli("run", str(job.pipeline), "--no-progress", "--model", "my-own-model")
    assert ran.code in (ExitCode.OK, ExitCode.SOME_FAILED), ran.err
    page = job.output.with_name("results.report.html").read_text("utf-8")
    assert "No price for this model in [prices] nor in genai-prices&#x27; data" in page or (
        "No price for this model in [prices] nor in genai-prices' data" in page
    )
