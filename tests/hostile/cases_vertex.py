"""Hostile Vertex AI setups: an API key where none is taken, a project or location that
is not one, credentials missing, unreadable, or refused by their token endpoint.

Each one ends in one sentence naming what to fix, never a traceback, and never shows
a key; none of them sends a request beyond loopback.  The credentials files are the
emulator's service-account credentials with their ``token_uri`` pointed elsewhere.
"""

from __future__ import annotations

import json
import re
from typing import Any

from stagedretry.cli._exit import ExitCode
from strategies.gemini.emulator import credentials_info

from ._corpus import INPUT, KEY, PLAN, Case, Ran, run_args

SCHEMA = '{"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}'


def words(text: str) -> str:
    """A regex of *text* whose spaces match any run of white space (the console wraps)."""
    return r"\s+".join(re.escape(word) for word in text.split(" "))


NO_CREDENTIALS = words("error: the vertex backend found no usable Google Cloud credentials")


def pipeline(backend: str = 'project = "books-project"\nlocation = "us-central1"\n') -> str:
    """A vertex job over ``input.jsonl`` (5 items) whose requests would go to the corpus's
    emulator, never to Google."""
    return (
        f'name = "hostile-vertex"\n{PLAN}\n[backend]\nkind = "vertex"\n'
        f'model = "gemini-2.5-flash"\nbase_url = "{{emulator}}"\n{backend}\n'
        '[input]\npath = "input.jsonl"\ntemplate = "Describe {title}."\n\n'
        '[output]\npath = "out/results.jsonl"\nschema = "title.schema.json"\n\n'
        '[journal]\npath = "out/journal.sqlite"\n\n'
        "[run]\nconcurrency = 1\n"
    )


def adc(token_uri: str, **changes: Any) -> str:
    """Service-account credentials (a real key, made for tests) whose tokens come from
    *token_uri*; *changes* replace fields (``None`` drops one)."""
    info: dict[str, Any] = {**credentials_info("http://127.0.0.1:9"), "token_uri": token_uri}
    for name, value in changes.items():
        if value is None:
            info.pop(name, None)
        else:
            info[name] = value
    return json.dumps(info)


def files(text: str, **more: str) -> dict[str, str]:
    return {"pipeline.toml": text, "input.jsonl": INPUT, "title.schema.json": SCHEMA, **more}


ADC_ENV = {"GOOGLE_APPLICATION_CREDENTIALS": "{dir}/adc.json"}


def _key_never_shown(ran: Ran) -> None:
    assert KEY not in ran.out + ran.err
    assert KEY[8:20] not in ran.out + ran.err


def _nothing_written(ran: Ran) -> None:
    results = ran.folder / "out/results.jsonl"
    assert not results.exists() or not results.read_text("utf-8").strip()


CASES = [
    Case(
        name="vertex_api_key_in_the_pipeline",
        args=("plan", "check", "pipeline.toml"),
        files=files(pipeline(f'project = "books-project"\napi_key = "{KEY}"\n')),
        code=ExitCode.USAGE,
        stderr=words("backend.api_key: the vertex backend never sends an API key"),
        check=_key_never_shown,
    ),
    Case(
        name="vertex_api_key_in_the_pipeline_run",
        args=run_args(),
        files=files(
            pipeline(f'project = "books-project"\napi_key = "{KEY}"\n'),
            **{"adc.json": adc("{emulator}/token")},
        ),
        env=ADC_ENV,
        code=ExitCode.USAGE,
        stderr=words("backend.api_key: the vertex backend never sends an API key"),
        check=_key_never_shown,
    ),
    Case(
        name="vertex_project_with_spaces",
        args=("plan", "check", "pipeline.toml"),
        files=files(pipeline('project = "My Project"\n')),
        code=ExitCode.USAGE,
        stderr=words("backend.project: expected a Google Cloud project id"),
    ),
    Case(
        name="vertex_project_with_a_slash",
        args=("plan", "check", "pipeline.toml"),
        files=files(pipeline('project = "books/locations/x"\n')),
        code=ExitCode.USAGE,
        stderr=words("backend.project: expected a Google Cloud project id"),
    ),
    Case(
        name="vertex_location_with_a_slash",
        args=("plan", "check", "pipeline.toml"),
        files=files(pipeline('project = "books-project"\nlocation = "us-central1/../x"\n')),
        code=ExitCode.USAGE,
        stderr=words("backend.location: expected a Vertex AI location"),
    ),
    Case(
        name="vertex_api_version_of_the_developer_api",
        args=("plan", "check", "pipeline.toml"),
        files=files(pipeline('project = "books-project"\napi_version = "v1beta"\n')),
        code=ExitCode.USAGE,
        stderr=r"backend\.api_version",
    ),
    Case(
        name="vertex_credentials_file_missing",
        args=run_args(),
        files=files(pipeline()),
        env={"GOOGLE_APPLICATION_CREDENTIALS": "{dir}/missing.json"},
        code=ExitCode.USAGE,
        stderr=NO_CREDENTIALS + r".*" + words("missing.json was not found"),
        check=_nothing_written,
    ),
    Case(
        name="vertex_credentials_file_not_json",
        args=run_args(),
        files=files(pipeline(), **{"adc.json": '{"type": "service_account", '}),
        env=ADC_ENV,
        code=ExitCode.USAGE,
        stderr=NO_CREDENTIALS,
        check=_nothing_written,
    ),
    Case(
        name="vertex_credentials_of_an_unknown_type",
        args=run_args(),
        files=files(pipeline(), **{"adc.json": '{"type": "api_key", "key": "' + KEY + '"}'}),
        env=ADC_ENV,
        code=ExitCode.USAGE,
        stderr=NO_CREDENTIALS,
        check=_key_never_shown,
    ),
    Case(
        name="vertex_no_project_anywhere",
        args=run_args(),
        files=files(pipeline(""), **{"adc.json": adc("{emulator}/token", project_id=None)}),
        env={**ADC_ENV, "GOOGLE_CLOUD_PROJECT": ""},
        code=ExitCode.USAGE,
        stderr=words("error: the vertex backend needs a Google Cloud project: set backend.project"),
    ),
    Case(
        # The token endpoint answers 404: the credentials cannot become a token, which no
        # item can mend; the run stops before it sends anything else.
        name="vertex_token_endpoint_refuses",
        args=run_args(),
        files=files(pipeline(), **{"adc.json": adc("{emulator}/no/such/token")}),
        env=ADC_ENV,
        code=ExitCode.RUN_STOPPED,
        stderr=words("the Google Cloud credentials could not be refreshed")
        + r".*"
        + words("0 items finished, 5 left"),
    ),
    Case(
        # Nobody listens where the tokens come from: as with a dead network, each attempt is
        # TRANSIENT and retried until the item's budget is spent.
        name="vertex_token_endpoint_dead",
        args=run_args(),
        files=files(pipeline(), **{"adc.json": adc("http://127.0.0.1:9/token")}),
        env=ADC_ENV,
        code=ExitCode.SOME_FAILED,
        timeout=60.0,
    ),
]
