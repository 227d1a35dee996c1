"""The cost frontier: the bundled workload in four modes, and what each one bills.

Each mode runs the bundled demo job (``stagedretry/demo/``: 300 records, the demo's
emulator seed and faults) through ``python -m stagedretry.cli run PIPELINE --json``,
on a copy of the demo's files in a temporary folder, so on a fresh in-process emulator:

1. ``standard+cache+partial``: the demo pipeline as it is;
2. ``flex->standard``: the demo's ladder on the Flex tier, each Flex stage falling
   back to a Standard twin when a request is shed (``on.shed``) or when it has spent
   its ``max_attempts`` (``on.give_up``); the emulator sheds Flex requests at
   ``--shed-rate`` and adds ``--flex-latency`` seconds to each;
3. ``batch``: the demo pipeline with ``[run] mode = "batch"`` (the emulator's
   implicit caching on, as the service's is);
4. ``naive``: standard tier, ``[cache] enabled = false``, and one full stage at
   temperature 0 whose ``on.invalid`` is itself, under the demo's ``max_prompts``:
   what a plain retry loop does.

For each mode it prints successes, requests, tokens by kind, the bill in USD (the
price table's price per tier, cache creation and storage included) and the time
(wall seconds of the run; the emulator runs on the wall clock, so a batch job's
completion time, ``batch_completion``, is in it), then, as its last line::

    cheapest=<mode> saving=<fraction below naive> successes=<n> naive_successes=<n>

    python benchmarks/cost_frontier.py                  # 300 items, shed rate 0.1
    python benchmarks/cost_frontier.py --items 30 --shed-rate 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

DEMO_FILES = ("pipeline.toml", "books.jsonl", "instructions.md")
ROOT = Path(__file__).resolve().parent.parent
MODES = ("standard+cache+partial", "flex->standard", "batch", "naive")


def _stage(name: str, kind: str, params: Mapping[str, Any], extra: str = "") -> str:
    pairs = ", ".join(f"{key} = {json.dumps(value)}" for key, value in params.items())
    return f'[[plan.stages]]\nname = "{name}"\nkind = "{kind}"\nparams = {{ {pairs} }}\n{extra}\n'


def _with_plan(text: str, stages: str) -> str:
    """*text* with its ``[[plan.stages]]`` replaced by *stages* (the ``[plan]`` keys kept)."""
    head, rest = text.split("[[plan.stages]]", 1)
    tail = "[backend]" + rest.split("[backend]", 1)[1]
    return head + stages + tail


def _flex_ladder(text: str) -> str:
    """Each demo stage on Flex, followed by its Standard twin; both lead where it led."""
    stages = tomllib.loads(text)["plan"]["stages"]
    names = [s["name"] for s in stages]
    blocks = []
    for index, stage in enumerate(stages):
        name, kind, params = stage["name"], stage.get("kind", "full"), stage.get("params", {})
        after = f"{names[index + 1]}_flex" if index + 1 < len(names) else None
        onward = f'invalid = "{after}"' if after else 'invalid = "exhaust"'
        twin = f"{name}_std"
        flex_on = f'on = {{ shed = "{twin}", give_up = "{twin}", {onward} }}'
        # Flex may take minutes on the service: its timeout is above Google's 1-15 min target.
        blocks.append(
            _stage(
                f"{name}_flex",
                kind,
                {**params, "service_tier": "flex"},
                f"max_attempts = 2\ntimeout = 900\n{flex_on}\n",
            )
        )
        blocks.append(_stage(twin, kind, params, f"on = {{ {onward} }}\n"))
    return "".join(blocks)


def _emulator(text: str, lines: str) -> str:
    return text.replace("[backend.emulator]\n", f"[backend.emulator]\n{lines}\n", 1)


def _variant(mode: str, text: str, shed_rate: float, flex_latency: float) -> str:
    if mode == "standard+cache+partial":
        return text
    if mode == "flex->standard":
        flex = f"flex = {{ shed_rate = {shed_rate}, latency = {flex_latency} }}"
        return _emulator(_with_plan(text, _flex_ladder(text)), flex)
    if mode == "batch":
        batch = _emulator(text, "implicit_caching = true")
        return batch.replace("[run]\n", '[run]\nmode = "batch"\n', 1)
    if mode == "naive":
        naive = _stage("full_t0", "full", {"temperature": 0.0}, 'on = { invalid = "full_t0" }\n')
        return _with_plan(text, naive).replace("[cache]\n", "[cache]\nenabled = false\n", 1)
    raise ValueError(f"unknown mode {mode!r}")


def build(folder: Path, mode: str, *, items: int, shed_rate: float, flex_latency: float) -> Path:
    """Copy the demo's files into *folder* and write *mode*'s pipeline; its path."""
    demo = resources.files("stagedretry.demo")
    folder.mkdir(parents=True, exist_ok=True)
    for name in DEMO_FILES:
        (folder / name).write_bytes((demo / name).read_bytes())
    records = (folder / "books.jsonl").read_text("utf-8").splitlines(keepends=True)
    (folder / "books.jsonl").write_text("".join(records[:items]), "utf-8")
    pipeline = folder / "pipeline.toml"
    text = pipeline.read_text("utf-8")
    pipeline.write_text(_variant(mode, text, shed_rate, flex_latency), "utf-8")
    return pipeline


def run(pipeline: Path, *args: str, timeout: float = 1800) -> dict[str, Any]:
    """``stagedretry run PIPELINE --json`` in a child process; its summary."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "stagedretry.cli", "run", str(pipeline), "--json", "--no-progress",
         "--no-report", *args],
        capture_output=True, text=True, check=False, timeout=timeout, env=env, cwd=ROOT,
    )  # fmt: skip
    if done.returncode not in (0, 1):
        raise SystemExit(f"{pipeline} exited {done.returncode}:\n{done.stderr}")
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def row(mode: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of one mode from its ``--json`` summary."""
    tokens = summary["tokens"]
    cost = summary["cost"]
    return {
        "mode": mode,
        "successes": summary["items"]["succeeded"],
        "requests": summary["attempts"],
        "prompts": summary["prompts"],
        "input": tokens["input"],
        "cached": tokens["cached"],
        "output": tokens["output"],
        "thinking": tokens["thinking"],
        "usd": cost["with_cache"],
        "tiers": {t["tier"]: t["usd"] for t in cost["tiers"]},
        "seconds": summary["wall_time"],
    }


def last_line(rows: Sequence[Mapping[str, Any]]) -> str:
    """``cheapest=... saving=... successes=... naive_successes=...`` for *rows*.

    The cheapest mode among those with at least naive's successes; its saving is
    ``1 - usd / naive's usd``.
    """
    naive = next(r for r in rows if r["mode"] == "naive")
    eligible = [r for r in rows if r["mode"] != "naive" and r["successes"] >= naive["successes"]]
    best = min(eligible or [naive], key=lambda r: r["usd"])
    saving = 1 - best["usd"] / naive["usd"] if naive["usd"] else 0.0
    return (
        f"cheapest={best['mode']} saving={saving:.3f} successes={best['successes']} "
        f"naive_successes={naive['successes']}"
    )


def table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    head = (
        f"{'mode':<24}{'succ':>5}{'reqs':>6}{'input':>10}{'cached':>10}{'output':>8}"
        f"{'think':>7}{'USD':>9}  {'by tier (USD)':<34}{'wall s':>7}"
    )
    lines = [head]
    for r in rows:
        tiers = " ".join(f"{tier}={usd:.4f}" for tier, usd in r["tiers"].items())
        lines.append(
            f"{r['mode']:<24}{r['successes']:>5}{r['requests']:>6}{r['input']:>10,}"
            f"{r['cached']:>10,}{r['output']:>8,}{r['thinking']:>7,}{r['usd']:>9.4f}  "
            f"{tiers:<34}{r['seconds']:>7.1f}"
        )
    return lines


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=300, help="the first N demo records")
    parser.add_argument("--shed-rate", type=float, default=0.1, help="Flex requests shed")
    parser.add_argument("--flex-latency", type=float, default=0.05, help="seconds per Flex request")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args(argv)
    modes = [m for m in MODES if m in args.modes or m == "naive"]
    out(
        f"cost frontier: the demo's first {args.items} records, emulator seed and faults as the "
        f"demo's; flex shed_rate={args.shed_rate} latency={args.flex_latency}s"
    )
    rows = []
    folder = Path(tempfile.mkdtemp(prefix="cost-frontier-"))
    try:
        for mode in modes:
            pipeline = build(
                folder / mode.replace(">", "").replace("+", "_"),
                mode,
                items=args.items,
                shed_rate=args.shed_rate,
                flex_latency=args.flex_latency,
            )
            rows.append(row(mode, run(pipeline)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for line in table(rows):
        out(line)
    out("USD: the price table's price per tier, cache creation and storage included")
    out(last_line(rows))


if __name__ == "__main__":
    main()
