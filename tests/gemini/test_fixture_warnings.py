"""The gemini_emulator fixture under ``-W error`` (issue 14 §5): the SDK's own warning is tolerated.

google-genai's aiohttp transport draws a ``DeprecationWarning`` from aiohttp on every
new session.  The fixture's filter used to be added during its own setup, after
pytest had read the test's filters, so under ``-W error`` every request raised it
and failed FATAL.  A fresh pytest process runs a user's test file here, with the
project's own ``filterwarnings = error`` and ``-W error`` on top.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

USER_TESTS = """
import warnings

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiStrategy


async def test_a_run_through_the_sdk(gemini_emulator, virtual_clock: VirtualClock) -> None:
    strategy = GeminiStrategy(gemini_emulator.client, "gemini-2.5-flash")
    runner = sr.Runner(sr.Plan.ladder(), strategy, clock=virtual_clock)
    result = (await runner.run([("a", "Say hi.")])).results[0]
    assert result.ok, (result.status, result.reason)


async def test_another_deprecation_still_fails(gemini_emulator) -> None:
    warnings.warn("the user's own deprecated call", DeprecationWarning, stacklevel=1)
"""

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


def test_the_fixture_tolerates_only_the_sdks_warning_under_w_error(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    (tmp_path / "pytest.ini").write_text(textwrap.dedent(INI))
    # This checkout first on the path, so the plugin's entry point loads this code.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-W", "error", "-p", "no:cacheprovider", "-q", "-rf"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout
    assert "1 failed, 1 passed" in out, out + done.stderr
    assert "FAILED test_user.py::test_another_deprecation_still_fails" in out
    assert "DeprecationWarning: the user's own deprecated call" in out
    assert "AiohttpClientSession" not in out
