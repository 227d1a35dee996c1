"""Engine overhead: stagedretry against a bare ``Semaphore`` + ``gather`` loop.

Runs N no-op items (a strategy that answers a valid result at once) through the
default four-stage plan at concurrency 100, and the same no-op call through a
bare asyncio loop, in the same process, and prints items/s for both and the
ratio.  With ``--rss`` it instead streams N items in a child process and
reports the peak RSS, to show memory grows with concurrency, not with N.

    python benchmarks/engine_overhead.py --items 100000
    python benchmarks/engine_overhead.py --rss 10000 1000000

``--json`` prints the figures as one JSON object instead (read by ``plot_overhead.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator

import stagedretry as sr
from strategies.callable import from_callable

ANSWER = '{"title": "Dune", "year": 1965}'
CONCURRENCY = 100


YIELD = True


async def noop_call() -> str:
    # By default a real suspension point, like any network call, so both loops pay for a
    # task switch; --no-yield answers without suspending (the harshest case for the engine).
    if YIELD:
        await asyncio.sleep(0)
    return ANSWER


async def bare(n: int) -> float:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one() -> str:
        async with sem:
            return await noop_call()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - start)


async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
    return await noop_call()


def items(n: int) -> Iterator[tuple[str, str]]:
    for i in range(n):
        yield (str(i), "p")


async def engine(n: int) -> float:
    runner = sr.Runner(sr.Plan.ladder(), from_callable(answer), concurrency=CONCURRENCY)
    start = time.perf_counter()
    batch = await runner.run(items(n))
    elapsed = time.perf_counter() - start
    assert batch.succeeded == n, batch.summary()
    return n / elapsed


async def engine_stream(n: int) -> float:
    runner = sr.Runner(sr.Plan.ladder(), from_callable(answer), concurrency=CONCURRENCY)
    start = time.perf_counter()
    done = 0
    async for _ in runner.stream(items(n)):
        done += 1
    assert done == n
    return n / (time.perf_counter() - start)


def throughput(n: int, repeat: int, as_json: bool = False) -> None:
    rows = []
    for _ in range(repeat):
        gc.collect()
        b = asyncio.run(bare(n))
        gc.collect()
        e = asyncio.run(engine(n))
        gc.collect()
        s = asyncio.run(engine_stream(n))
        rows.append((b, e, s))
    if as_json:
        runs = [{"bare": b, "run": e, "stream": s} for b, e, s in rows]
        python = sys.version.split()[0]
        figures = {"items": n, "concurrency": CONCURRENCY, "yields": YIELD, "python": python}
        print(json.dumps({**figures, "runs": runs}))
        return
    print(
        f"N={n:,} concurrency={CONCURRENCY} plan=ladder (4 stages) "
        f"no-op {'yields once' if YIELD else 'never yields'} python={sys.version.split()[0]}"
    )
    print(
        f"{'run':>4} {'bare items/s':>14} {'run() items/s':>14} {'ratio':>6} "
        f"{'stream() items/s':>17} {'ratio':>6}"
    )
    for i, (b, e, s) in enumerate(rows, 1):
        print(f"{i:>4} {b:>14,.0f} {e:>14,.0f} {e / b:>6.2f} {s:>17,.0f} {s / b:>6.2f}")
    best = max(rows, key=lambda r: r[1] / r[0])
    med = sorted(rows, key=lambda r: r[1] / r[0])[len(rows) // 2]
    print(f"median ratio run()/bare = {med[1] / med[0]:.2f} (best {best[1] / best[0]:.2f})")


def _rss_child(n: int) -> None:
    asyncio.run(engine_stream(n))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(peak_kib)


def rss(sizes: list[int], as_json: bool = False) -> None:
    peaks = {}
    for n in sizes:
        out = subprocess.run(
            # The child is a fresh process: it must be told --no-yield as well.
            [sys.executable, __file__, "--rss-child", str(n), *([] if YIELD else ["--no-yield"])],
            check=True,
            capture_output=True,
            text=True,
        )
        peaks[n] = int(out.stdout.strip().splitlines()[-1])
        if as_json:
            continue
        print(f"stream N={n:>10,}: peak RSS {peaks[n] / 1024:8.1f} MiB")
    if as_json:
        print(json.dumps({"concurrency": CONCURRENCY, "peak_rss_kib": peaks}))
        return
    low, high = peaks[sizes[0]], peaks[sizes[-1]]
    print(f"peak RSS ratio N={sizes[-1]:,} / N={sizes[0]:,} = {high / low:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rss", type=int, nargs="+", metavar="N")
    parser.add_argument("--no-yield", action="store_true", help="the no-op never suspends")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global YIELD  # noqa: PLW0603 - a benchmark switch, set once before anything runs
    YIELD = not args.no_yield
    if args.rss_child:
        _rss_child(args.rss_child)
    elif args.rss:
        rss(args.rss, args.json)
    else:
        throughput(args.items, args.repeat, args.json)


if __name__ == "__main__":
    main()
