"""pytest fixtures for code built on stagedretry (loaded through the ``pytest11`` entry point).

``virtual_clock`` and ``scripted_strategy`` need nothing beyond stagedretry.
Override ``virtual_clock`` in a conftest to change the clock every fixture
uses (e.g. ``real_idle`` for tests with real I/O under a virtual timeout).
The ``gemini_emulator`` fixture belongs to the Gemini provider:
``strategies.pytest_gemini``.
"""

from __future__ import annotations

import pytest

from ._clock import VirtualClock
from ._scripted import ScriptedStrategy


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A fresh autojumping ``VirtualClock`` for one test."""
    return VirtualClock()


@pytest.fixture
def scripted_strategy() -> ScriptedStrategy:
    """A ``ScriptedStrategy`` with no scripts yet: every request succeeds until ``feed()``."""
    return ScriptedStrategy()
