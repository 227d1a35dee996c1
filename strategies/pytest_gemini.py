"""pytest fixtures of the Gemini provider (the ``stagedretry-gemini`` entry point).

``gemini_emulator`` starts the loopback Gemini emulator on the test's
``virtual_clock`` (from stagedretry's own plugin) and hands out real
``google.genai`` clients pointed at it.  It needs the ``gemini`` extra and
pytest-asyncio; without pytest-asyncio the fixture is not defined.

This module sits beside ``strategies.gemini``, not inside it, and imports it
only when the fixture is used: pytest loads every installed plugin at start,
and an environment without google-genai must still run its tests.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from google import genai

    from stagedretry.testing import VirtualClock

    from .gemini.emulator import GeminiEmulator

__all__ = ["GeminiEmulatorFixture", "gemini_emulator"]

# google-genai's aiohttp transport subclasses aiohttp.ClientSession, which newer aiohttp
# deprecates on every new session: the SDK's doing, tolerated for tests using the fixture.
_SDK_AIOHTTP_WARNING = (
    "ignore:Inheritance class AiohttpClientSession from ClientSession is discouraged"
    ":DeprecationWarning"
)
_SDK_ENV_PREFIXES = ("GOOGLE_GENAI_",)
_SDK_ENV_NAMES = ("GOOGLE_API_KEY", "GEMINI_API_KEY")


class GeminiEmulatorFixture:
    """A running Gemini emulator and an SDK client pointed at it.

    :meth:`connect` builds more clients (other transports, timeouts); all are
    closed, and the emulator stopped, when the test ends.
    """

    __slots__ = ("_clients", "client", "emulator")

    def __init__(self, emulator: GeminiEmulator) -> None:
        self.emulator = emulator
        self._clients: list[genai.Client] = []
        self.client = self.connect()

    @property
    def base_url(self) -> str:
        """The emulator's loopback address, e.g. ``http://127.0.0.1:40321``."""
        return self.emulator.base_url

    def connect(self, **options: Any) -> genai.Client:
        """A new ``genai.Client`` for the emulator (options go to ``make_client``)."""
        from .gemini.emulator import make_client

        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", "Inheritance class AiohttpClientSession", DeprecationWarning
            )
            client = make_client(self.emulator.base_url, **options)
        self._clients.append(client)
        return client

    async def aclose(self) -> None:
        """Close every client and stop the emulator."""
        for client in self._clients:
            await client.aio.aclose()
            client.close()
        self._clients.clear()
        self.emulator.stop()

    def __repr__(self) -> str:
        return f"<gemini_emulator {self.emulator.base_url}>"


def _scrub_sdk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's environment (keys, Vertex, replay mode) from steering the SDK."""
    for name in list(os.environ):
        if name in _SDK_ENV_NAMES or name.startswith(_SDK_ENV_PREFIXES):
            monkeypatch.delenv(name)
    # A proxy from the environment must not sit between the SDK and the loopback emulator.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tolerate the SDK's aiohttp warning in every test that uses ``gemini_emulator``.

    As a marker given at collection: pytest reads a test's ``filterwarnings``
    marks once, before its setup, so a mark the fixture added itself came too
    late, and under ``-W error`` (or ``filterwarnings = error``) the warning
    became an exception inside the SDK's request, hence a FATAL outcome.
    """
    mark = pytest.mark.filterwarnings(_SDK_AIOHTTP_WARNING)
    for item in items:
        if "gemini_emulator" in getattr(item, "fixturenames", ()):
            item.add_marker(mark)


def _emulator_fixture() -> Callable[..., AsyncIterator[GeminiEmulatorFixture]] | None:
    try:
        import pytest_asyncio
    except ImportError:
        return None

    @pytest_asyncio.fixture
    async def gemini_emulator(
        virtual_clock: VirtualClock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> AsyncIterator[GeminiEmulatorFixture]:
        """A running ``GeminiEmulator`` (on the ``virtual_clock``'s wall time) and a client.

        SDK environment variables are cleared for the test, and the SDK's own aiohttp
        ``DeprecationWarning`` is ignored in it, even under ``-W error``.
        """
        from .gemini.emulator import GeminiEmulator

        _scrub_sdk_env(monkeypatch)
        emulator = GeminiEmulator(clock=virtual_clock.time)
        emulator.start()
        try:
            handle = GeminiEmulatorFixture(emulator)
        except BaseException:
            emulator.stop()
            raise
        try:
            yield handle
        finally:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", "Inheritance class AiohttpClientSession", DeprecationWarning
                )
                await handle.aclose()

    return gemini_emulator


gemini_emulator = _emulator_fixture()
