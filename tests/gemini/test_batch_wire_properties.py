"""The JSONL line GeminiStrategy writes is the SDK's own inlined request, for any stage params.

The strategy writes a batch's JSONL file by hand (the SDK has no public converter); the SDK
writes the inlined requests.  For any params, schema and prompt, the emulator must receive the
same ``GenerateContentRequest`` both ways (up to proto3 JSON's two spellings of a field name,
and the ``model`` the SDK adds to an inlined request).
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stagedretry as sr
from strategies.gemini import GeminiStrategy
from strategies.gemini.emulator import GeminiEmulator, make_client

from .conftest import MODEL, Book
from .test_strategy_batch import GEMINI_SCHEMA, camel, entries

_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.floats(0.0, 2.0),
        "top_p": st.floats(0.0, 1.0),
        "top_k": st.integers(1, 1000),
        "max_output_tokens": st.integers(1, 65536),
        "seed": st.integers(-(2**31), 2**31 - 1),
        # A stop sequence of blanks alone is refused by the params (not a wire question).
        "stop_sequences": st.lists(st.text(min_size=1, max_size=5).filter(str.strip), max_size=5),
        "presence_penalty": st.floats(-2.0, 2.0),
        "frequency_penalty": st.floats(-2.0, 2.0),
        "thinking_budget": st.integers(-1, 32768),
    },
)


def test_jsonl_lines_equal_the_sdks_inlined_requests() -> None:
    loop = asyncio.new_event_loop()
    emulator = GeminiEmulator(seed=2, invalid_rate=0.0, invalid_rate_slope=0.0)
    emulator.start()
    client = make_client(emulator.base_url)
    attempts = iter(range(1, 10**6))

    async def both(params: dict[str, Any], schema: Any, system: str | None, prompt: str) -> None:
        plan = sr.Plan(stages=(sr.Stage("only", "full", params),))
        options: dict[str, Any] = {"response_schema": schema, "system_instruction": system}
        inline = GeminiStrategy(client, MODEL, batch_lookback=0, **options)
        by_file = GeminiStrategy(client, MODEL, batch_lookback=0, batch_inline_limit=1, **options)
        made = entries([prompt], plan=plan, attempt=next(attempts))
        first, second = await inline.submit_batch(made), await by_file.submit_batch(made)
        sent = [
            camel({k: v for k, v in r.items() if k != "model"})
            for r in emulator.batch_requests(first)
        ]
        assert [camel(r) for r in emulator.batch_requests(second)] == sent

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        params=_PARAMS,
        schema=st.sampled_from([None, Book, GEMINI_SCHEMA]),
        system=st.one_of(st.none(), st.text(min_size=1, max_size=40)),
        prompt=st.text(min_size=1, max_size=80),
    )
    def alike(params: dict[str, Any], schema: Any, system: str | None, prompt: str) -> None:
        loop.run_until_complete(both(params, schema, system, prompt))

    try:
        alike()
    finally:
        loop.run_until_complete(client.aio.aclose())
        loop.close()
        client.close()
        emulator.stop()
