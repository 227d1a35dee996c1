"""Gemini answers at the edges, over the real SDK and real HTTP against the emulator.

Usage reported only per modality, a rating graded by severity alone, and an
answer cut off by the token limit (which the next partial stage repairs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from google import genai
from google.genai import types

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiContextCache, GeminiStrategy, response_usage
from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator, count_tokens
from strategies.gemini.emulator._tokens import MEDIA_PART_TOKENS

from .conftest import MODEL, Book, Recorder, billed, doc, items, ladder_runner, usage_of

BOOK_FIELDS = ["title", "author", "year", "pages"]
CUT = "cut off by the output token limit (finish reason MAX_TOKENS)"  # in the error text
# A member of the flat Book record followed by a comma is complete; the rest was cut or never sent.
_COMPLETE_MEMBER = re.compile(r'"(\w+)": (?:"[^"\\]*"|-?\d+),')


def _image() -> types.Part:
    return types.Part.from_bytes(data=b"\x89PNG\r\n\x1a\n", mime_type="image/png")


async def test_usage_given_only_per_modality_is_counted(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=3)
    emulator.inject(Fault(kind=FaultKind.USAGE_DETAILS_ONLY))
    client, _ = recording_client(emulator)
    pictures = types.UserContent(parts=[types.Part(text=doc(1240, "plate")), _image(), _image()])
    cache = GeminiContextCache(client, MODEL, system_instruction="Catalogue.", contents=[pictures])
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Book)
    batch = await ladder_runner(strategy, virtual_clock, cache=cache).run(items(3))
    assert batch.succeeded == 3
    cached = 1240 + 2 * MEDIA_PART_TOKENS + count_tokens("Catalogue.")
    for result in batch.results:
        (attempt,) = result.attempts
        assert attempt.meta is not None
        raw = attempt.meta.raw.usage_metadata
        # Nothing but the breakdowns said how many tokens there were.
        assert raw.cached_content_token_count is None
        assert raw.prompt_token_count is None
        assert raw.candidates_token_count is None
        assert attempt.usage.cached_tokens == cached
        assert attempt.usage.input_tokens > cached
        assert attempt.usage.output_tokens > 0
    assert usage_of(batch) == billed(emulator)
    assert batch.cached_share > 0.9


def test_counts_prefer_the_top_level_number_and_else_sum_the_details() -> None:
    # The emulator runs no tools: the tool-use counts are read from a body shaped as the service's.
    response = types.GenerateContentResponse.model_validate(
        {
            "usageMetadata": {
                "promptTokenCount": 3000,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1}],
                "cacheTokensDetails": [
                    {"modality": "TEXT", "tokenCount": 1240},
                    {"modality": "IMAGE", "tokenCount": 807},
                ],
                "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 40}],
                "toolUsePromptTokensDetails": [
                    {"modality": "TEXT", "tokenCount": 30},
                    {"modality": "IMAGE", "tokenCount": 258},
                ],
                "thoughtsTokenCount": 12,
            }
        }
    )
    usage = response_usage(response)
    assert usage == sr.Usage(
        input_tokens=3000 + 288, output_tokens=40, cached_tokens=2047, thinking_tokens=12
    )


async def test_a_rating_graded_by_severity_alone_is_kept(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=5)
    emulator.inject(Fault(kind=FaultKind.SAFETY_STOP_BY_SEVERITY, at=1))
    client, _ = recording_client(emulator)
    strategy = GeminiStrategy(client, MODEL, response_schema=Book, system_instruction="Catalogue.")
    batch = await ladder_runner(strategy, virtual_clock, concurrency=1).run(items(1))
    (result,) = batch.results
    assert result.ok
    stopped = result.attempts[0]
    assert stopped.outcome is sr.OutcomeKind.INVALID
    assert stopped.meta is not None
    assert stopped.meta.finish_reason == "SAFETY"
    assert stopped.meta.safety_ratings["HARM_CATEGORY_DANGEROUS_CONTENT"] == "HARM_SEVERITY_HIGH"
    assert stopped.meta.safety_ratings["HARM_CATEGORY_HARASSMENT"] == "NEGLIGIBLE"


def test_a_blocking_rating_without_any_grade_is_kept() -> None:
    response = types.GenerateContentResponse.model_validate(
        {
            "candidates": [
                {
                    "finishReason": "SAFETY",
                    "safetyRatings": [
                        {"category": "HARM_CATEGORY_HATE_SPEECH", "blocked": True},
                        {"category": "HARM_CATEGORY_HARASSMENT"},
                    ],
                }
            ]
        }
    )
    from strategies.gemini import response_meta

    assert dict(response_meta(response).safety_ratings) == {"HARM_CATEGORY_HATE_SPEECH": "BLOCKED"}


async def test_a_truncated_answer_is_repaired_by_asking_for_the_cut_fields_only(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=5)
    emulator.inject(Fault(kind=FaultKind.MAX_TOKENS, at=1))
    client, recorder = recording_client(emulator)
    strategy = GeminiStrategy(client, MODEL, response_schema=Book, system_instruction="Catalogue.")
    batch = await ladder_runner(strategy, virtual_clock, plan=sr.Plan.ladder()).run(items(1))
    (result,) = batch.results
    assert result.ok
    assert result.prompts == 2
    cut, repair = result.attempts
    assert (cut.stage, repair.stage) == ("full_t0", "partial_t0")
    assert cut.meta is not None
    assert cut.meta.finish_reason == "MAX_TOKENS"
    assert cut.meta.truncated
    assert cut.error is not None
    assert CUT in cut.error
    # The fields the cut answer held whole are kept; the partial request asks for the rest.
    cut_text = cut.meta.raw.text
    whole = _COMPLETE_MEMBER.findall(cut_text)
    asked = [f for f in BOOK_FIELDS if f not in whole]
    assert whole
    assert asked
    assert repair.fields == tuple((name,) for name in asked)
    schema = recorder.bodies[1]["generationConfig"]["responseJsonSchema"]
    assert list(schema["properties"]) == asked
    assert recorder.bodies[1]["contents"][0]["parts"][0]["text"].endswith(
        "Answer with a JSON object holding only these fields: "
        f"{', '.join('/' + name for name in asked)}, "
        f"shaped like {json.dumps(dict.fromkeys(asked, '...'))}."
    )
    output = result.output
    assert isinstance(output, Book)
    kept = json.loads(cut_text[: cut_text.rindex(",")] + "}")
    assert output.model_dump(include=set(kept)) == kept
    assert usage_of(batch) == billed(emulator)


async def test_an_answer_cut_before_any_field_is_complete_re_asks_every_field(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=5)
    client, _ = recording_client(emulator)
    plan = sr.Plan(
        stages=[
            sr.Stage("tight", "full", {"max_output_tokens": 3}),
            sr.Stage("fix", "partial"),
            sr.Stage("roomy", "full"),
        ],
        max_prompts=3,
    )
    strategy = GeminiStrategy(client, MODEL, response_schema=Book, system_instruction="Catalogue.")
    batch = await ladder_runner(strategy, virtual_clock, plan=plan).run(items(1))
    (result,) = batch.results
    assert result.ok
    cut, whole = result.attempts
    assert cut.meta is not None
    assert cut.meta.truncated
    assert cut.error is not None
    assert CUT in cut.error
    # Nothing was complete, so the partial stage asks for every field.
    assert (cut.stage, whole.stage) == ("tight", "fix")
    assert whole.fields == tuple((name,) for name in BOOK_FIELDS)
