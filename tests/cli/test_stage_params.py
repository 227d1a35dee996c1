"""Stage params checked against the backend's params type by ``plan check`` and before ``run``.

Each malformed case is written into the pipeline file as TOML (so ``nan`` and
``inf`` are TOML's own), and must be refused by ``plan check`` and by ``run``
with exit code 2 and one sentence naming the file and the param's path, while
nothing is sent: the request log stays absent, no emulator is started, and a
gemini backend's server (a loopback emulator demanding the key) records no
request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from strategies.gemini.emulator import GeminiEmulator

from .conftest import Invocation, Job

KEY = "AIzaSyTest-0123456789-abcdefghijklmnop"
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
FIRST = "params = { temperature = 0.0 }"
"""Stage 0's params in the test pipeline (stage 1 has the same; stage 2 has 0.25)."""
THIRD = "params = { temperature = 0.25 }"

GEMINI_ONLY = (
    "presence_penalty, frequency_penalty, thinking_budget, response_mime_type, service_tier"
)
SAMPLING = "temperature, top_p, top_k, max_output_tokens, seed, model, stop_sequences"
INT32 = "[-2147483648, 2147483647]"

# (id, params of stage 0 or 2, the path under plan.stages[i].params, the problem)
COMMON: list[tuple[str, str, str, str]] = [
    ("string", 'temperature = "hot"', "[0].params.temperature",
     "expected a number in [0, 2], got the string 'hot'"),
    ("nan", "temperature = nan", "[0].params.temperature",
     "expected a number in [0, 2], got the number nan"),
    ("inf", "temperature = inf", "[0].params.temperature",
     "expected a number in [0, 2], got the number inf"),
    ("above range", "temperature = 2.5", "[0].params.temperature",
     "expected a number in [0, 2], got the number 2.5"),
    ("below range", "temperature = -0.1", "[0].params.temperature",
     "expected a number in [0, 2], got the number -0.1"),
    ("bool as number", "temperature = true", "[0].params.temperature",
     "expected a number in [0, 2], got the boolean true"),
    ("list for a scalar", "temperature = [0.1]", "[0].params.temperature",
     "expected a number in [0, 2], got a list"),
    ("top_p above one", "top_p = 1.5", "[0].params.top_p",
     "expected a number in [0, 1], got the number 1.5"),
    ("top_p below zero in a later stage", "top_p = -0.5", "[2].params.top_p",
     "expected a number in [0, 1], got the number -0.5"),
    ("top_k zero", "top_k = 0", "[0].params.top_k",
     "expected a whole number in [1, 2147483647], got the number 0"),
    ("top_k fraction", "top_k = 2.5", "[0].params.top_k",
     "expected a whole number in [1, 2147483647], got the number 2.5"),
    ("max_output_tokens zero", "max_output_tokens = 0", "[0].params.max_output_tokens",
     "expected a whole number of tokens in [1, 2147483647], got the number 0"),
    ("max_output_tokens as text", 'max_output_tokens = "800"', "[0].params.max_output_tokens",
     "expected a whole number of tokens in [1, 2147483647], got the string '800'"),
    ("max_output_tokens as bool", "max_output_tokens = true", "[0].params.max_output_tokens",
     "expected a whole number of tokens in [1, 2147483647], got the boolean true"),
    ("seed beyond 32 bits", "seed = 4294967296", "[0].params.seed",
     f"expected a whole number in {INT32}, got the number 4294967296"),
    ("seed fraction", "seed = 1.5", "[0].params.seed",
     f"expected a whole number in {INT32}, got the number 1.5"),
    ("empty model", 'model = ""', "[0].params.model", "expected a non-empty string"),
    ("model as list", 'model = ["gemini-2.5-pro"]', "[0].params.model",
     "expected a string, got a list"),
    ("too many stop sequences", 'stop_sequences = ["a", "b", "c", "d", "e", "f"]',
     "[0].params.stop_sequences", "at most 5 items, got 6"),
    ("stop sequence not text", "stop_sequences = [1]", "[0].params.stop_sequences[0]",
     "expected a string, got the number 1"),
]  # fmt: skip

GEMINI: list[tuple[str, str, str, str]] = [
    *COMMON,
    ("misspelt", "temprature = 0.2", "[0].params.temprature",
     f"unknown parameter (did you mean 'temperature'? known: {SAMPLING}, {GEMINI_ONLY})"),
    ("unknown", 'safety = "off"', "[2].params.safety",
     f"unknown parameter (known: {SAMPLING}, {GEMINI_ONLY})"),
    ("bad mime type", 'response_mime_type = "application/xml"', "[0].params.response_mime_type",
     "expected one of application/json, text/plain, text/x.enum, got 'application/xml'"),
    ("thinking budget too large", "thinking_budget = 40000", "[0].params.thinking_budget",
     "expected a whole number of tokens in [-1, 32768], got the number 40000"),
    ("thinking budget below -1", "thinking_budget = -2", "[0].params.thinking_budget",
     "expected a whole number of tokens in [-1, 32768], got the number -2"),
    ("penalty out of range", "frequency_penalty = -inf", "[0].params.frequency_penalty",
     "expected a number in [-2, 2], got the number -inf"),
]  # fmt: skip

SIM: list[tuple[str, str, str, str]] = [
    *COMMON,
    ("misspelt", "temprature = 0.2", "[0].params.temprature",
     f"unknown parameter (did you mean 'temperature'? known: {SAMPLING})"),
    ("a gemini param", "thinking_budget = 100", "[0].params.thinking_budget",
     f"unknown parameter (known: {SAMPLING})"),
    ("a gemini mime type", 'response_mime_type = "application/json"',
     "[2].params.response_mime_type", f"unknown parameter (known: {SAMPLING})"),
]  # fmt: skip


def _ids(cases: list[tuple[str, str, str, str]]) -> list[str]:
    return [c[0] for c in cases]


def _set_params(job: Job, params: str, where: str) -> None:
    text = job.pipeline.read_text("utf-8")
    stage = FIRST if where.startswith("[0]") else THIRD
    assert stage in text
    job.pipeline.write_text(text.replace(stage, f"params = {{ {params} }}", 1), "utf-8")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[GeminiEmulator]:
    """What the gemini backend talks to: a loopback emulator that demands the key."""
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    with GeminiEmulator(seed=2, invalid_rate=0.0, api_key=KEY) as emulator:
        yield emulator


def _gemini_family_job(make_job: Callable[..., Job], kind: str, base_url: str) -> Job:
    job = make_job(items=3, sim="", run='concurrency = 2\nrequest_log = "out/requests.jsonl"')
    (job.folder / "title.schema.json").write_text(json.dumps(SCHEMA), "utf-8")
    backend = (
        f'kind = "gemini"\nbase_url = "{base_url}"\n'
        if kind == "gemini"
        else ('kind = "emulator"\n')
    )
    text = job.pipeline.read_text("utf-8")
    text = text.replace('kind = "sim"\n\n[backend.sim]\n', backend)
    text = text.replace(
        '[output]\npath = "out/results.jsonl"',
        '[output]\npath = "out/results.jsonl"\nschema = "title.schema.json"',
    )
    job.pipeline.write_text(text, "utf-8")
    return job


def _refused(cli: Callable[..., Invocation], job: Job, message: str) -> None:
    for args in (("plan", "check", str(job.pipeline)), ("run", str(job.pipeline))):
        done = cli(*args)
        assert done.code == 2, (args, done.err)
        assert done.err.count("\n") == 1, done.err  # one sentence
        assert f"error: {message}" in done.err, done.err
    assert not (job.folder / "out/requests.jsonl").exists()
    assert not job.output.exists()


@pytest.mark.parametrize("kind", ["gemini", "emulator"])
@pytest.mark.parametrize(("params", "where", "problem"), [c[1:] for c in GEMINI], ids=_ids(GEMINI))
def test_the_gemini_family_refuses_malformed_params_before_sending(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    server: GeminiEmulator,
    kind: str,
    params: str,
    where: str,
    problem: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = _gemini_family_job(make_job, kind, server.base_url)
    _set_params(job, params, where)
    started: list[GeminiEmulator] = []
    start = GeminiEmulator.start

    def recording_start(emulator: GeminiEmulator) -> str:
        started.append(emulator)
        return start(emulator)

    # Recorded, not replaced: a started emulator stops (and joins its thread) before the
    # command returns, so only the call itself shows that the backend was built.
    monkeypatch.setattr(GeminiEmulator, "start", recording_start)
    _refused(cli, job, f"pipeline.toml: plan.stages{where}: {problem}")
    assert server.ledger.requests == ()  # the gemini backend sent nothing
    assert started == []  # the emulator backend never started one


@pytest.mark.parametrize(("params", "where", "problem"), [c[1:] for c in SIM], ids=_ids(SIM))
def test_the_sim_refuses_malformed_params_before_sending(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    params: str,
    where: str,
    problem: str,
) -> None:
    job = make_job(items=3, run='concurrency = 2\nrequest_log = "out/requests.jsonl"')
    _set_params(job, params, where)
    _refused(cli, job, f"pipeline.toml: plan.stages{where}: {problem}")


@pytest.mark.parametrize("kind", ["gemini", "emulator"])
def test_well_formed_gemini_params_pass_and_are_sent(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    server: GeminiEmulator,
    kind: str,
) -> None:
    job = _gemini_family_job(make_job, kind, server.base_url)
    _set_params(
        job,
        "temperature = 0, top_p = 0.9, top_k = 40, max_output_tokens = 200, seed = -7, "
        'stop_sequences = "END", thinking_budget = 0, response_mime_type = "application/json", '
        "presence_penalty = -2, frequency_penalty = 2",
        "[0]",
    )
    assert cli("plan", "check", str(job.pipeline)).code == 0
    done = cli("run", str(job.pipeline), "--no-progress")
    assert done.code == 0, done.err
    sent = [
        json.loads(line)
        for line in (job.folder / "out/requests.jsonl").read_text("utf-8").splitlines()
    ]
    assert len(sent) >= 3
    # The strategy received every param, checked and typed (a lone stop sequence is a list).
    first = next(entry for entry in sent if entry["stage"] == "full_t0")
    assert first["params"] == {
        "temperature": 0.0,
        "top_p": 0.9,
        "top_k": 40,
        "max_output_tokens": 200,
        "seed": -7,
        "stop_sequences": ["END"],
        "thinking_budget": 0,
        "response_mime_type": "application/json",
        "presence_penalty": -2.0,
        "frequency_penalty": 2.0,
    }
    if kind == "gemini":
        assert len(server.ledger.requests) >= 3


def test_overriding_the_backend_checks_against_its_params(
    make_job: Callable[..., Job], cli: Callable[..., Invocation], server: GeminiEmulator
) -> None:
    job = _gemini_family_job(make_job, "emulator", server.base_url)
    _set_params(job, "thinking_budget = 128", "[0]")
    assert cli("plan", "check", str(job.pipeline)).code == 0
    message = (
        "pipeline.toml: plan.stages[0].params.thinking_budget: "
        f"unknown parameter (known: {SAMPLING})"
    )
    checked = cli("plan", "check", str(job.pipeline), "--set", "backend.kind=sim")
    assert checked.code == 2
    assert message in checked.err
    ran = cli("run", str(job.pipeline), "--backend", "sim")
    assert ran.code == 2
    assert message in ran.err
    assert not (job.folder / "out/requests.jsonl").exists()


def test_a_param_set_on_the_command_line_is_named_so(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=2)
    done = cli("run", str(job.pipeline), "--set", "plan.stages[1].params.temperature=inf")
    assert done.code == 2
    assert (
        "pipeline.toml: plan.stages[1].params.temperature: expected a number in [0, 2], "
        "got the number inf (set on the command line)"
    ) in done.err


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("temperature", 10**400, "expected a number in [0, 2], got the number 1000"),
        ("top_k", 10**400, "expected a whole number in [1, 2147483647], got the number 1000"),
        ("seed", -(10**400), f"expected a whole number in {INT32}, got the number -1000"),
    ],
)
def test_a_yaml_number_too_large_for_a_float_is_refused_in_one_sentence(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    key: str,
    value: int,
    problem: str,
) -> None:
    """YAML integers have no size limit (TOML's stop at 64 bits): none may crash the check."""
    import tomllib

    import yaml

    job = make_job(items=3)
    data = tomllib.loads(job.pipeline.read_text("utf-8"))
    data["plan"]["stages"][1]["params"] = {key: value}
    pipeline = job.pipeline.with_suffix(".yaml")
    pipeline.write_text(yaml.safe_dump(data), "utf-8")
    done = cli("plan", "check", str(pipeline))
    assert done.code == 2, done.err
    assert done.err.count("\n") == 1, done.err
    assert f"error: pipeline.yaml: plan.stages[1].params.{key}: {problem}" in done.err
    assert "digits)" in done.err
