"""Issue 11 §4 as an adversary: a price table that names no model of the job, or one model
twice; an estimate of a vertex job with no credentials anywhere; an estimate whose quotas
would pace or stop its sample."""

from __future__ import annotations

import json

from stagedretry.cli._exit import ExitCode

from ._corpus import Case, Ran
from .cases_stops import emulator, files

FLASH = "gemini-2.5-flash"
PRICE = "input = 3.0\ncached_input = 0.3\noutput = 25.0\n"
VERTEX = (
    f'kind = "vertex"\nmodel = "{FLASH}"\nproject = "my-project-123"\nlocation = "us-central1"\n'
    '\n[backend.quota]\nrpm = 1000\n\n[backend.quota.models."gemini-2.5-flash"]\nrpm = 30'
)


def _with(backend: str, extra: str) -> dict[str, str | bytes]:
    found = files(backend)
    text = found["pipeline.toml"]
    assert isinstance(text, str)
    found["pipeline.toml"] = text + "\n" + extra
    return found


def _priced_by_genai_prices(ran: Ran) -> None:
    found = json.loads(ran.out)
    assert found["cost"]["price_sources"]["input"].startswith("genai-prices ")


def _vertex_offline(ran: Ran) -> None:
    found = json.loads(ran.out)
    assert found["quota"] == {"rpm": 30}  # the model's own limit, not the table's
    assert found["mix"]["source"].endswith("run on the emulator")


def _one_request_an_item(ran: Ran) -> None:
    found = json.loads(ran.out)
    assert found["mix"]["source"] == "a sample of 3 items run on its own backend"
    assert found["mix"]["requests_per_item"] == 1.0


CASES = [
    Case(
        "adv11c-prices-for-a-misspelled-model",
        ("estimate", "pipeline.toml", "--sample", "0", "--json"),
        ExitCode.OK,
        files=_with(emulator(), f'[prices."gemini-2.5-flsh"]\n{PRICE}'),
        stderr=r"warning: pipeline\.toml: prices: no entry for the model 'gemini-2\.5-flash'",
        check=_priced_by_genai_prices,
    ),
    Case(
        "adv11c-prices-for-one-model-twice",
        ("estimate", "pipeline.toml"),
        ExitCode.USAGE,
        files=_with(emulator(), f'[prices."{FLASH}"]\n{PRICE}\n[prices."models/{FLASH}"]\n{PRICE}'),
        stderr=r"prices\.\"models/gemini-2\.5-flash\": the model 'gemini-2\.5-flash' has a price",
    ),
    Case(
        "adv11c-estimate-vertex-without-credentials",
        ("estimate", "pipeline.toml", "--sample", "3", "--json"),
        ExitCode.OK,
        files=_with(VERTEX, ""),
        env={"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/adc.json"},
        check=_vertex_offline,
    ),
    Case(
        "adv11c-estimate-sample-under-a-spent-day-quota",
        ("estimate", "pipeline.toml", "--sample", "3", "--json"),
        ExitCode.OK,
        files=_with(emulator(), "[backend.quota]\nrpd = 1\n\n[backend.emulator.quota]\nrpm = 1\n"),
        timeout=30.0,
        check=_one_request_an_item,
    ),
]
