"""A seeded demo is repeatable: the same faults hit the same requests, whatever the timing.

The emulator decides a fault's ``rate`` by a hash of the seed, the rule, the request and how
often the rule saw that request, not by the order in which concurrent requests arrive.
"""

from __future__ import annotations

import json
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

from .conftest import command

FAULTS = (
    # Fault rates far above the demo's, so a small run meets many of them.
    "--set",
    "backend.emulator.faults[0].rate=0.15",
    "--set",
    "backend.emulator.faults[0].retry_delay=0.01",
    "--set",
    "backend.emulator.faults[1].rate=0.3",
    "--set",
    "backend.emulator.faults[2].rate=0.1",
    "--set",
    "backend.emulator.invalid_rate=0.1",
    "--set",
    "backend.emulator.latency=0",
)


def _demo(folder: Path, records: Path, env: dict[str, str]) -> tuple[dict[str, Any], list[Any]]:
    done = subprocess.run(
        command("demo", "--dir", str(folder), "--json", "--set", f"input.path={records}", *FAULTS),
        capture_output=True,
        env=env,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    summary = json.loads(done.stdout)
    rows = [json.loads(line) for line in (folder / "books.out.jsonl").read_text().splitlines()]
    per_item = [(r["id"], r["status"], r["stage"], r["prompts"], r["attempts"]) for r in rows]
    return summary, per_item


def test_two_seeded_demo_runs_meet_the_same_faults_and_end_alike(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    shipped = resources.files("stagedretry.demo").joinpath("books.jsonl").read_text("utf-8")
    records = tmp_path / "books.jsonl"
    records.write_text("".join(line + "\n" for line in shipped.splitlines()[:60]), "utf-8")
    first, first_items = _demo(tmp_path / "one", records, subprocess_env)
    second, second_items = _demo(tmp_path / "two", records, subprocess_env)
    outcomes = {s["name"]: s["outcomes"] for s in first["stages"]}
    # The faults were met: the comparison is not between two quiet runs.
    assert sum(o.get("transient", 0) for o in outcomes.values()) >= 5
    assert sum(o.get("rate_limited", 0) for o in outcomes.values()) >= 2
    assert outcomes == {s["name"]: s["outcomes"] for s in second["stages"]}
    assert (first["prompts"], first["attempts"]) == (second["prompts"], second["attempts"])
    assert first["items"] == second["items"]
    assert first_items == second_items
