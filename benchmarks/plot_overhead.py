"""Plot the engine's throughput against the bare asyncio loop (and streaming memory).

Runs ``engine_overhead.py --json`` in child processes, once with a no-op that never
suspends and once with one that yields once, plus the streaming-memory check, saves
the raw figures as JSON beside the plot, and draws the PNG shown in docs/benchmarks.md:

    python benchmarks/plot_overhead.py                        # measure, then plot
    python benchmarks/plot_overhead.py --from docs/img/engine_overhead.json   # re-plot
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OVERHEAD = HERE / "engine_overhead.py"
OUT = HERE.parent / "docs" / "img" / "engine_overhead.png"


def _run(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(OVERHEAD), *args, "--json"], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(items: int, repeat: int, rss_sizes: list[int]) -> dict[str, Any]:
    """Every figure the plot needs, measured now on this machine."""
    common = ["--items", str(items), "--repeat", str(repeat)]
    print(f"measuring N={items:,} x{repeat}, no-op never yields ...", file=sys.stderr)
    never = _run(*common, "--no-yield")
    print(f"measuring N={items:,} x{repeat}, no-op yields once ...", file=sys.stderr)
    once = _run(*common)
    rss = None
    if rss_sizes:
        print(f"measuring peak RSS streaming {rss_sizes} ...", file=sys.stderr)
        rss = _run("--rss", *map(str, rss_sizes))
    return {
        "machine": f"{platform.machine()}, {_cores()} cores, Python {platform.python_version()}",
        "throughput": [never, once],
        "rss": rss,
    }


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _median_ratio(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] / r["bare"] for r in runs)


def describe(figures: dict[str, Any]) -> str:
    """The figures as the lines quoted in docs/benchmarks.md."""
    lines = [f"machine: {figures['machine']}"]
    for block in figures["throughput"]:
        runs = block["runs"]
        mode = "yields once" if block["yields"] else "never yields"
        lines.append(
            f"N={block['items']:,} no-op {mode}: bare {_median(runs, 'bare'):,.0f} items/s, "
            f"run() {_median(runs, 'run'):,.0f} ({_median_ratio(runs, 'run'):.2f}), "
            f"stream() {_median(runs, 'stream'):,.0f} ({_median_ratio(runs, 'stream'):.2f}) "
            f"[median of {len(runs)}]"
        )
    rss = figures.get("rss")
    if rss:
        peaks = {int(n): kib for n, kib in rss["peak_rss_kib"].items()}
        low, high = min(peaks), max(peaks)
        shown = ", ".join(f"N={n:,}: {kib / 1024:.1f} MiB" for n, kib in sorted(peaks.items()))
        lines.append(f"peak RSS streaming {shown} (ratio {peaks[high] / peaks[low]:.2f})")
    return "\n".join(lines)


def plot(figures: dict[str, Any], out: Path) -> None:
    """Draw the throughput bars (and the memory bars, when measured) into *out*."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rss = figures.get("rss")
    fig, axes = plt.subplots(
        1,
        2 if rss else 1,
        figsize=(10.5 if rss else 7.0, 4.2),
        width_ratios=[2.2, 1] if rss else None,
    )
    ax = axes[0] if rss else axes
    series = [
        ("bare", "bare Semaphore + gather", "#9e9e9e"),
        ("run", "Runner.run()", "#3f51b5"),
        ("stream", "Runner.stream()", "#00897b"),
    ]
    blocks = figures["throughput"]
    width = 0.26
    for i, (key, label, colour) in enumerate(series):
        xs, heights, lows, highs = [], [], [], []
        for g, block in enumerate(blocks):
            values = [r[key] for r in block["runs"]]
            mid = statistics.median(values)
            xs.append(g + (i - 1) * width)
            heights.append(mid)
            lows.append(mid - min(values))
            highs.append(max(values) - mid)
        bars = ax.bar(xs, heights, width, label=label, color=colour, yerr=[lows, highs], capsize=3)
        if key != "bare":
            for bar, block in zip(bars, blocks, strict=True):
                ratio = _median_ratio(block["runs"], key)
                top = max(r[key] for r in block["runs"])  # above the whisker
                ax.annotate(
                    f"{ratio:.2f}x",
                    (bar.get_x() + bar.get_width() / 2, top),
                    xytext=(0, 4),
                    textcoords="offset points",
                    ha="center",
                    fontsize=9,
                )
    items = blocks[0]["items"]
    ax.set_xticks(
        range(len(blocks)),
        ["no-op never yields" if not b["yields"] else "no-op yields once" for b in blocks],
    )
    ax.set_ylabel("items per second (labels: ratio to bare)")
    ax.set_title(f"Throughput: {items:,} no-op items, concurrency 100, 4-stage ladder", fontsize=10)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:.0f}k"))
    ax.legend(fontsize=8, loc="upper right")
    ax.margins(y=0.15)
    if rss:
        peaks = sorted((int(n), kib / 1024) for n, kib in rss["peak_rss_kib"].items())
        right = axes[1]
        bars = right.bar([f"{n:,}" for n, _ in peaks], [mib for _, mib in peaks], color="#00897b")
        for bar, (_, mib) in zip(bars, peaks, strict=True):
            right.annotate(
                f"{mib:.1f} MiB",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                fontsize=9,
            )
        right.set_xlabel("items streamed")
        right.set_ylabel("peak RSS (MiB)")
        right.set_title("Memory: Runner.stream()", fontsize=10)
        right.margins(y=0.15)
    fig.text(0.99, 0.01, figures["machine"], ha="right", fontsize=7, color="#616161")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--rss",
        type=int,
        nargs="*",
        default=[10_000, 1_000_000],
        metavar="N",
        help="stream sizes for the memory panel (none: leave it out)",
    )
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="plot figures saved by an earlier run instead of measuring",
    )
    parser.add_argument("--out", type=Path, default=OUT, help="the PNG to write")
    args = parser.parse_args()
    if args.source is not None:
        figures = json.loads(args.source.read_text(encoding="utf-8"))
    else:
        figures = measure(args.items, args.repeat, args.rss)
        saved = args.out.with_suffix(".json")
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    plot(figures, args.out)
    print(describe(figures))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
