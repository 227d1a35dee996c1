"""Gemini over loopback: stagedretry's overhead beside the bare SDK, and what the cache saves.

Speed: N items through ``GeminiStrategy`` + ``GeminiContextCache`` (the default ladder,
pydantic validation, full accounting) against the emulator with no injected latency and
no invalid answers, so every item is exactly one request; beside the same requests made
with the bare SDK under a semaphore (same client kind, same cache, same config, the
answer parsed by the same pydantic model).  Rounds alternate and the median rate of each
path is reported, with the library's overhead (target: at most 15%).

Cost: the bundled workload (a long cataloguing guide as the system instruction,
eight-field records, one field in twenty invalid at temperature 0) run twice:
with the cache and the four-stage ladder (partial repairs), and with no cache and
full-prompt retries only (full stages at rising temperatures, same budget).  Reported:
the share of prompt tokens served from the cache and the billed saving, in tokens and
at Gemini 2.5 Flash list prices (cache creation included, storage for the run's few
seconds left out).

The emulator runs in a child process by default, so the client's CPU is its own.

    python benchmarks/gemini_loopback.py
    python benchmarks/gemini_loopback.py --items 5000 --transport httpx2 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import attrs
import pydantic
from google import genai
from google.genai import types

import stagedretry as sr
from strategies.gemini import GeminiContextCache, GeminiStrategy
from strategies.gemini.emulator import GeminiEmulator, Ledger, make_client

MODEL = "gemini-2.5-flash"
# Gemini 2.5 Flash list prices, dollars per million tokens.
PRICE_INPUT, PRICE_CACHED, PRICE_OUTPUT = 0.30, 0.03, 2.50

GUIDE = " ".join(
    f"Rule {n}: record the title exactly as printed on the title page, the author as "
    "'First Last', the year of first publication, the page count of this edition, the "
    "publisher's imprint, the language of the text, a one-line summary and the edition "
    "number; never guess a value you cannot read."
    for n in range(1, 41)
)
SYSTEM = "You are the cataloguer of a research library. Follow the house rules. " + GUIDE


class Record(pydantic.BaseModel):
    title: str
    author: str
    year: int
    pages: int
    publisher: str
    language: str
    summary: str
    edition: int


def prompts(n: int) -> Iterator[tuple[str, str]]:
    for i in range(n):
        yield (f"rec-{i}", f"Catalogue the book on shelf {i // 40}, position {i % 40}.")


# -- the emulator, in this process or a child ---------------------------------------------------


def _serve(conn: Connection, options: dict[str, Any]) -> None:
    with GeminiEmulator(**options) as emulator:
        conn.send(emulator.base_url)
        while True:
            command = conn.recv()
            if command == "ledger":
                conn.send(_light(emulator.ledger))
            elif command == "reset":
                emulator.reset_ledger()
                conn.send(None)
            else:
                break


def _light(ledger: Ledger) -> Ledger:
    """The counters without the per-request log (thousands of records to pickle)."""
    return attrs.evolve(ledger, requests=())


class Server:
    """One emulator, reachable by URL, whose ledger can be read and reset."""

    def __init__(self, *, subprocess: bool, **options: Any) -> None:
        self._local: GeminiEmulator | None = None
        self._conn: Connection | None = None
        self._process: Any = None
        if subprocess:
            context = multiprocessing.get_context("spawn")
            parent, child = context.Pipe()
            self._process = context.Process(target=_serve, args=(child, options), daemon=True)
            self._process.start()
            self._conn = parent
            self.base_url: str = parent.recv()
        else:
            self._local = GeminiEmulator(**options)
            self.base_url = self._local.start()

    def ledger(self) -> Ledger:
        if self._local is not None:
            return _light(self._local.ledger)
        assert self._conn is not None
        self._conn.send("ledger")
        ledger: Ledger = self._conn.recv()
        return ledger

    def reset(self) -> None:
        if self._local is not None:
            self._local.reset_ledger()
            return
        assert self._conn is not None
        self._conn.send("reset")
        self._conn.recv()

    def stop(self) -> None:
        if self._local is not None:
            self._local.stop()
        if self._conn is not None:
            self._conn.send("stop")
            self._process.join(5)


# -- speed ------------------------------------------------------------------------------------


@attrs.frozen
class Round:
    """One timed run: items per wall-clock second, and client CPU seconds per item."""

    rate: float
    cpu: float


async def timed(n: int, run: Awaitable[object]) -> Round:
    wall, cpu = time.perf_counter(), time.process_time()
    await run
    return Round(n / (time.perf_counter() - wall), (time.process_time() - cpu) / n)


async def library_round(client: genai.Client, n: int, concurrency: int) -> Round:
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Record)
    runner = sr.Runner(
        sr.Plan.ladder(),
        strategy,
        validator=sr.validators.pydantic(Record),
        resources=[cache],
        concurrency=concurrency,
    )

    async def run() -> None:
        batch = await runner.run(prompts(n))
        if batch.succeeded != n or batch.attempts != n:
            raise SystemExit(f"library run went wrong: {batch.summary()}")

    return await timed(n, run())


async def bare_round(client: genai.Client, cache_name: str, n: int, concurrency: int) -> Round:
    config = types.GenerateContentConfig(
        cached_content=cache_name,
        temperature=0.0,
        response_mime_type="application/json",
        response_json_schema=Record.model_json_schema(),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    semaphore = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> Record:
        async with semaphore:
            answer = await client.aio.models.generate_content(
                model=MODEL, contents=prompt, config=config
            )
            return Record.model_validate_json(answer.text or "")

    async def run() -> None:
        await asyncio.gather(*(one(prompt) for _, prompt in prompts(n)))

    return await timed(n, run())


async def speed(args: argparse.Namespace) -> tuple[list[Round], list[Round]]:
    server = Server(
        subprocess=not args.in_process, seed=1, invalid_rate=0.0, invalid_rate_slope=0.0
    )
    client = make_client(server.base_url, transport=args.transport)
    try:
        cache = await client.aio.caches.create(
            model=MODEL,
            config=types.CreateCachedContentConfig(system_instruction=SYSTEM, ttl="3600s"),
        )
        assert cache.name is not None
        # Warm up both paths (connections, lazy imports, pydantic schemas).
        await library_round(client, 200, args.concurrency)
        await bare_round(client, cache.name, 200, args.concurrency)
        lib: list[Round] = []
        bare: list[Round] = []
        for _ in range(args.rounds):
            lib.append(await library_round(client, args.items, args.concurrency))
            bare.append(await bare_round(client, cache.name, args.items, args.concurrency))
    finally:
        await client.aio.aclose()
        client.close()
        server.stop()
    return lib, bare


# -- cost -------------------------------------------------------------------------------------


def baseline_plan(max_prompts: int) -> sr.Plan:
    """Full-prompt retries only: the ladder's budget, temperatures rising, no partial stage."""
    return sr.Plan(
        stages=[
            sr.Stage(f"full_t{int(t * 100)}", "full", {"temperature": t})
            for t in (0.0, 0.25, 0.5, 0.75)
        ],
        max_prompts=max_prompts,
    )


async def cost_run(
    args: argparse.Namespace, *, cached: bool
) -> tuple[sr.BatchResult, Ledger, float]:
    # One field in twenty is invalid at temperature 0 (a third of full answers need a
    # repair), more as the temperature rises.
    server = Server(
        subprocess=not args.in_process, seed=2, invalid_rate=0.05, invalid_rate_slope=0.2
    )
    client = make_client(server.base_url, transport=args.transport)
    try:
        if cached:
            cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
            strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Record)
            plan, resources = sr.Plan.ladder(), [cache]
        else:
            strategy = GeminiStrategy(
                client, MODEL, response_schema=Record, system_instruction=SYSTEM
            )
            plan, resources = baseline_plan(sr.Plan.ladder().max_prompts), []
        runner = sr.Runner(
            plan,
            strategy,
            validator=sr.validators.pydantic(Record),
            resources=resources,
            concurrency=args.concurrency,
        )
        batch = await runner.run(prompts(args.cost_items))
        ledger = server.ledger()
    finally:
        await client.aio.aclose()
        client.close()
        server.stop()
    u = batch.usage
    if (u.input_tokens, u.cached_tokens, u.output_tokens) != (
        ledger.prompt_tokens,
        ledger.cached_tokens,
        ledger.candidates_tokens,
    ):
        raise SystemExit("the library's token totals differ from the emulator's ledger")
    dollars = PRICE_INPUT * billed_tokens(ledger) / 1e6
    return batch, ledger, dollars


def billed_tokens(ledger: Ledger) -> float:
    """Input-price-equivalent tokens: cached input at a tenth, output at its price ratio."""
    return (
        ledger.fresh_prompt_tokens
        + ledger.cache_tokens_created
        + ledger.cached_tokens * PRICE_CACHED / PRICE_INPUT
        + (ledger.candidates_tokens + ledger.thoughts_tokens) * PRICE_OUTPUT / PRICE_INPUT
    )


# -- report -----------------------------------------------------------------------------------


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "   ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=5000, help="items per speed round")
    parser.add_argument("--cost-items", type=int, default=5000, help="items per cost run")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternating speed rounds")
    parser.add_argument("--transport", choices=["aiohttp", "httpx2"], default="aiohttp")
    parser.add_argument(
        "--in-process", action="store_true", help="run the emulator in a thread of this process"
    )
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", "Inheritance class AiohttpClientSession", DeprecationWarning)
    where = "in this process" if args.in_process else "in a child process"
    print(
        f"gemini_loopback: concurrency {args.concurrency}, transport {args.transport}, "
        f"emulator {where}, google-genai {genai.__version__}, Python {sys.version.split()[0]}"
    )

    if not args.skip_speed:
        lib, bare = asyncio.run(speed(args))
        # Rounds are paired (library, then bare, back to back): medians of the per-round
        # ratios resist the machine's load drifting between rounds.
        rate_ratio = statistics.median(a.rate / b.rate for a, b in zip(lib, bare, strict=True))
        cpu_ratio = statistics.median(a.cpu / b.cpu for a, b in zip(lib, bare, strict=True))
        print(f"\nspeed: {args.items} items per round, one request each, {args.rounds} rounds")
        print(
            table(
                [
                    ("path", "items/s", "client CPU ms/item", "rounds (items/s)"),
                    (
                        "bare SDK + semaphore",
                        f"{statistics.median(r.rate for r in bare):,.0f}",
                        f"{statistics.median(r.cpu for r in bare) * 1e3:.3f}",
                        " ".join(f"{r.rate:.0f}" for r in bare),
                    ),
                    (
                        "stagedretry",
                        f"{statistics.median(r.rate for r in lib):,.0f}",
                        f"{statistics.median(r.cpu for r in lib) * 1e3:.3f}",
                        " ".join(f"{r.rate:.0f}" for r in lib),
                    ),
                ]
            )
        )
        overhead = max(1 / rate_ratio - 1, cpu_ratio - 1)
        verdict = "within" if overhead <= 0.15 else "OVER"
        print(
            f"  library/bare: rate x{rate_ratio:.3f}, client CPU per item x{cpu_ratio:.3f} "
            f"(medians of paired rounds): the library adds {overhead:.1%} "
            f"({verdict} the 15% target)"
        )

    if not args.skip_cost:
        cached, led_a, dollars_a = asyncio.run(cost_run(args, cached=True))
        plain, led_b, dollars_b = asyncio.run(cost_run(args, cached=False))
        share = led_a.cached_tokens / led_a.prompt_tokens
        saving = 1 - billed_tokens(led_a) / billed_tokens(led_b)
        print(
            f"\ncost: {args.cost_items} items, a {led_a.cache_tokens_created:,}-token cached "
            "guide, 8-field records (token totals checked against the emulator's ledger)"
        )
        print(
            table(
                [
                    ("", "cache + ladder", "no cache, full retries"),
                    ("items succeeded", f"{cached.succeeded:,}", f"{plain.succeeded:,}"),
                    ("requests", f"{led_a.generate_calls:,}", f"{led_b.generate_calls:,}"),
                    ("prompt tokens", f"{led_a.prompt_tokens:,}", f"{led_b.prompt_tokens:,}"),
                    ("  served from cache", f"{led_a.cached_tokens:,}", f"{led_b.cached_tokens:,}"),
                    ("cache created (tokens)", f"{led_a.cache_tokens_created:,}", "0"),
                    (
                        "output tokens",
                        f"{led_a.candidates_tokens:,}",
                        f"{led_b.candidates_tokens:,}",
                    ),
                    (
                        "billed, input-equivalent",
                        f"{billed_tokens(led_a):,.0f}",
                        f"{billed_tokens(led_b):,.0f}",
                    ),
                    ("billed at list prices", f"${dollars_a:.4f}", f"${dollars_b:.4f}"),
                    (
                        "  per item succeeded",
                        f"${dollars_a / max(1, cached.succeeded) * 1000:.4f}/1k",
                        f"${dollars_b / max(1, plain.succeeded) * 1000:.4f}/1k",
                    ),
                ]
            )
        )
        print(f"  share of prompt tokens served from the cache: {share:.1%} (target >= 70%)")
        print(f"  billed saving vs no cache + full retries: {saving:.1%} (tokens priced as billed)")


if __name__ == "__main__":
    main()
