"""Quota admission against reactive 429 handling, side by side, on the emulator's quotas.

The emulator enforces 600 requests and 200,000 input tokens per minute (per model, a
moving window, with the service's 429 bodies); 2,000 items, each one request when
answered, go through one ``Runner.run`` in this process twice: once reacting to 429s
only (the shared cooldown on the server's ``RetryInfo``), once with
``GeminiStrategy(quota=...)`` admitting each request before it is sent.  For each mode
it prints the requests and input tokens served per quota minute as a fraction of the
quota (the mean over every minute-long window of the run, as the quota counts them),
the binding fraction, and the 429s.  The last line is
``admission utilization=<binding fraction> refused=<429s / requests answered>``.

    python benchmarks/quota.py                      # the real figure: ~3.5 min per mode
    python benchmarks/quota.py --minute 6 --items 200 --rpm 60 --tpm 20000   # scaled

``--minute`` shortens the quota minute of the emulator and of the admission alike (a
time scale: both count in seconds of wall time).  ``--strategy`` picks the ``limits``
window of the admission (``moving-window``, ``sliding-window-counter``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

import attrs
import pydantic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import stagedretry as sr
from strategies.gemini import GeminiStrategy, disconnect
from strategies.gemini.emulator import EmulatorQuota, GeminiEmulator, make_client
from strategies.quota import Quota, QuotaAdmission

MODEL = "gemini-2.5-flash"
WORDS = ("catalogue", "book", "author", "year", "pages", "title", "shelf", "index")


class Book(pydantic.BaseModel):
    title: str
    author: str
    year: int
    pages: int


def prompts(n: int, mean_tokens: int, seed: int) -> list[tuple[str, str]]:
    """*n* items whose prompts hold about *mean_tokens* emulator tokens each (+-50 %)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = rng.randint(mean_tokens // 2, mean_tokens * 3 // 2)
        out.append((f"item-{i}", " ".join(rng.choice(WORDS) for _ in range(size))))
    return out


async def run_mode(args: argparse.Namespace, admission: bool) -> dict[str, float]:
    quota = EmulatorQuota(rpm=args.rpm, tpm=args.tpm, minute=args.minute)
    emulator = GeminiEmulator(
        seed=args.seed,
        invalid_rate=0.0,
        invalid_rate_slope=0.0,
        latency=args.latency,
        quota=quota,
    )
    base_url = await asyncio.to_thread(emulator.start)
    client = make_client(base_url)
    admit = (
        QuotaAdmission(
            Quota(rpm=args.rpm, tpm=args.tpm),
            minute=args.minute,
            strategy=args.strategy,
            margin=args.margin,
        )
        if admission
        else None
    )
    strategy = GeminiStrategy(client, MODEL, response_schema=Book, quota=admit)
    plan = attrs.evolve(sr.Plan.ladder(), max_rate_limit_waits=1000)
    runner = sr.Runner(
        plan, strategy, validator=sr.validators.pydantic(Book), concurrency=args.concurrency
    )
    started = time.monotonic()
    try:
        batch = await runner.run(prompts(args.items, args.tokens, args.seed))
    finally:
        wall = time.monotonic() - started
        await disconnect(client)
        await asyncio.to_thread(emulator.stop)
    stats = emulator.quota_stats
    requests, tokens = stats.achieved(args.minute)
    rpm, tpm = requests / args.rpm, tokens / args.tpm
    answered = len(stats.served) + stats.refusals
    return {
        "succeeded": batch.succeeded,
        "served": len(stats.served),
        "refusals": stats.refusals,
        "refused": stats.refusals / answered if answered else 0.0,
        "rpm": rpm,
        "tpm": tpm,
        "binding": max(rpm, tpm),
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--tpm", type=int, default=200_000)
    parser.add_argument("--tokens", type=int, default=250, help="mean prompt tokens")
    parser.add_argument("--minute", type=int, default=60, help="seconds in a quota minute")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request")
    parser.add_argument("--margin", type=float, default=0.25)
    parser.add_argument(
        "--strategy", default="moving-window", choices=("moving-window", "sliding-window-counter")
    )
    parser.add_argument("--mode", choices=("both", "reactive", "admission"), default="both")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(
        f"emulator quota: {args.rpm} requests and {args.tpm:,} input tokens per "
        f"{args.minute} s; {args.items} items of ~{args.tokens} tokens; concurrency "
        f"{args.concurrency}; latency {args.latency} s; admission {args.strategy}"
    )
    print(
        f"{'mode':<10} {'served':>6} {'429s':>6} {'refused':>8} {'RPM/q':>6} {'TPM/q':>6} "
        f"{'binding':>7} {'wall s':>7}"
    )
    results = {}
    modes = ("reactive", "admission") if args.mode == "both" else (args.mode,)
    for mode in modes:
        r = asyncio.run(run_mode(args, admission=mode == "admission"))
        results[mode] = r
        print(
            f"{mode:<10} {r['served']:>6.0f} {r['refusals']:>6.0f} {r['refused']:>8.4f} "
            f"{r['rpm']:>6.3f} {r['tpm']:>6.3f} {r['binding']:>7.3f} {r['wall']:>7.1f}",
            flush=True,
        )
    last = results.get("admission") or results["reactive"]
    name = "admission" if "admission" in results else "reactive"
    print(f"{name} utilization={last['binding']:.3f} refused={last['refused']:.4f}")


if __name__ == "__main__":
    main()
