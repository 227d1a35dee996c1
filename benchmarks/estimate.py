"""The estimate against the measured bill, on the bundled demo.

For each emulator seed, ``stagedretry estimate`` (a sample of N items run on the
emulator, no request to a service) and then ``stagedretry demo`` (the whole job on
the same emulator settings) run as the user runs them, and the two bills are
printed side by side.  ``--sample 0`` shows the documented defaults on the same job.

    python benchmarks/estimate.py                 # seeds 7 (the demo's), 11, 23
    python benchmarks/estimate.py --seeds 1 2 3 --sample 10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any


def _cli(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "stagedretry.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 23])
    parser.add_argument("--sample", type=int, default=20)
    args = parser.parse_args()
    pipeline = str(resources.files("stagedretry.demo") / "pipeline.toml")
    print("estimate vs measured bill: the bundled demo, 300 items, on the in-process emulator")
    print(f"  {'seed':>4}  {'sample':>6}  {'estimate':>9}  {'measured':>9}  {'error':>7}")
    worst = 0.0
    for seed in args.seeds:
        setting = f"backend.emulator.seed={seed}"
        with tempfile.TemporaryDirectory() as folder:
            ran = _cli("demo", "--dir", str(Path(folder)), "--json", "--no-progress",
                       "--no-report", "--set", setting)  # fmt: skip
        measured = ran["cost"]["with_cache"]
        for sample in (args.sample, 0):
            found = _cli("estimate", pipeline, "--json", "--sample", str(sample), "--set", setting)
            expected = found["cost"]["with_cache"]
            error = expected / measured - 1
            if sample:
                worst = max(worst, abs(error))
            money = f"{f'${expected:.4f}':>9}  {f'${measured:.4f}':>9}"
            print(f"  {seed:>4}  {sample:>6}  {money}  {error:>+7.1%}")
    print(f"estimate sample={args.sample} worst_error={worst:.3f} (target <= 0.25)")


if __name__ == "__main__":
    main()
