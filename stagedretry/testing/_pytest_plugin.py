"""pytest fixtures for code built on stagedretry (loaded through the ``pytest11`` entry point)."""

from __future__ import annotations

import pytest

from ._clock import VirtualClock


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A fresh autojumping ``VirtualClock`` for one test."""
    return VirtualClock()
