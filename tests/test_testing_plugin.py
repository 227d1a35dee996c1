"""The pytest plugin's fixtures, and the testing package's public surface."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC

import pytest
from google.genai import types

import stagedretry as sr
import stagedretry.testing
from stagedretry import OutcomeKind
from stagedretry.testing import ScriptedStrategy, VirtualClock
from strategies.pytest_gemini import GeminiEmulatorFixture

MODEL = "gemini-2.5-flash"


def test_the_plugin_is_registered_through_its_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("stagedretry")
    assert pytestconfig.pluginmanager.has_plugin("stagedretry-gemini")


async def test_virtual_clock_fixture(virtual_clock: VirtualClock) -> None:
    assert virtual_clock.monotonic() == 0.0
    await virtual_clock.sleep(86_400)
    assert virtual_clock.monotonic() == 86_400.0


async def test_scripted_strategy_fixture(
    scripted_strategy: ScriptedStrategy, virtual_clock: VirtualClock
) -> None:
    scripted_strategy.feed("a", OutcomeKind.TRANSIENT)
    runner = sr.Runner(sr.Plan.ladder(), scripted_strategy, clock=virtual_clock)
    batch = await runner.run([("a", "p"), ("b", "p")])
    assert batch.succeeded == 2
    assert [r.item_id for r in scripted_strategy.requests].count("a") == 2
    assert virtual_clock.monotonic() > 0  # the transient's backoff was slept virtually


@pytest.fixture
def _dirty_sdk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "leaked-google-key")
    monkeypatch.setenv("GEMINI_API_KEY", "leaked-gemini-key")
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")


@pytest.mark.usefixtures("_dirty_sdk_env")
async def test_gemini_emulator_fixture_serves_a_clean_client(
    gemini_emulator: GeminiEmulatorFixture, virtual_clock: VirtualClock
) -> None:
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"):
        assert name not in os.environ
    assert gemini_emulator.base_url.startswith("http://127.0.0.1:")
    answer = await gemini_emulator.client.aio.models.generate_content(
        model=MODEL, contents="hello there"
    )
    assert answer.text
    assert len(gemini_emulator.emulator.ledger.requests) == 1


async def test_gemini_emulator_runs_on_the_virtual_clocks_wall_time(
    gemini_emulator: GeminiEmulatorFixture, virtual_clock: VirtualClock
) -> None:
    await virtual_clock.sleep(1_000)
    cache = await gemini_emulator.client.aio.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(contents=" ".join(["word"] * 1500), ttl="60s"),
    )
    assert cache.expire_time is not None
    assert cache.expire_time.astimezone(UTC).timestamp() == pytest.approx(virtual_clock.time() + 60)
    other = gemini_emulator.connect(transport="httpx2")
    listed = [c.name async for c in await other.aio.caches.list()]
    assert listed == [cache.name]


def test_the_public_surface_is_pinned() -> None:
    assert sorted(stagedretry.testing.__all__) == [
        "Asks",
        "DEFAULT_ANSWER",
        "ExpectedPath",
        "JobEnd",
        "JobStep",
        "KindReading",
        "NearMiss",
        "NearMissKind",
        "PlanCheckFailed",
        "PlanCheckResult",
        "RecordedRequest",
        "ReferenceItem",
        "ScriptStep",
        "ScriptedJob",
        "ScriptedStrategy",
        "Skips",
        "Step",
        "VirtualClock",
        "backoffs",
        "check_classification",
        "check_plan",
        "expected_path",
        "near_misses",
        "outcome_scripts",
        "outcomes",
        "plan_state_machine",
        "plans",
    ]
    for name in stagedretry.testing.__all__:
        assert getattr(stagedretry.testing, name) is not None
    with pytest.raises(AttributeError):
        _ = stagedretry.testing.no_such_helper


def test_hypothesis_is_imported_only_when_a_helper_needs_it() -> None:
    code = (
        "import sys, stagedretry, stagedretry.testing\n"
        "assert 'hypothesis' not in sys.modules, 'imported too early'\n"
        "from stagedretry.testing import VirtualClock, ScriptedStrategy, expected_path\n"
        "assert 'hypothesis' not in sys.modules, 'imported by the plain helpers'\n"
        "from stagedretry.testing import plans\n"
        "assert 'hypothesis' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_gemini_plugin_loads_without_google_genai() -> None:
    """pytest imports every installed plugin at start: the Gemini one must not need the SDK."""
    script = textwrap.dedent(
        """
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("google", "aiohttp"):
                    raise ImportError(f"blocked: {name}")
                return None

        sys.meta_path.insert(0, Block())
        import strategies.pytest_gemini as plugin
        assert plugin.gemini_emulator is not None
        assert "google" not in sys.modules
        print("loaded")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded"
