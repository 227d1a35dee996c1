"""Shared test configuration: hypothesis profiles, a scrubbed SDK environment.

Other fixtures come from the stagedretry pytest plugin.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# "ci" (the default) is derandomized and keeps no example database, so a run is
# reproducible on any machine; "dev" explores new examples on every run.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=300)
settings.load_profile(os.environ.get("STAGEDRETRY_HYPOTHESIS_PROFILE", "ci"))


# The SDK's aiohttp deprecation warning is tolerated once, in pyproject's filterwarnings.
@pytest.fixture(autouse=True)
def _scrub_sdk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's environment from steering the SDK (keys, Vertex, replay mode).

    A proxy from the environment must not sit between the SDK and a loopback emulator either.
    """
    for name in list(os.environ):
        if name in ("GOOGLE_API_KEY", "GEMINI_API_KEY") or name.startswith("GOOGLE_GENAI_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
