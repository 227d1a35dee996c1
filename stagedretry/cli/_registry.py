"""The backends the app can run, by name: one line per provider.

Each line names the module whose ``BACKEND`` is the provider's
:class:`~strategies.backend.BackendSpec`, and the extra that installs its
packages.  A provider is imported only when a pipeline names it, so a pipeline
for the offline simulator needs neither google-genai nor aiohttp.  Adding a
backend is one provider module plus one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Final

import attrs

from strategies.backend import BackendError, BackendSpec


@attrs.frozen
class _Provider:
    module: str
    extra: str = "cli"
    """The ``stagedretry[...]`` extra that installs what the module imports."""


BACKENDS: Final[Mapping[str, _Provider]] = {
    "gemini": _Provider("strategies.gemini"),
    "vertex": _Provider("strategies.gemini.vertex"),
    "emulator": _Provider("strategies.gemini.emulator"),
    "sim": _Provider("strategies.sim"),
}


def backend_names() -> tuple[str, ...]:
    """The names ``[backend] kind`` accepts, in the order help texts list them."""
    return tuple(BACKENDS)


def backend_spec(name: str) -> BackendSpec[Any]:
    """The spec of the backend *name*; raise :class:`BackendError` if its packages are missing.

    Raises :class:`KeyError` for a name not in :data:`BACKENDS`.
    """
    provider = BACKENDS[name]
    try:
        module = importlib.import_module(provider.module)
    except ImportError as exc:
        raise BackendError(
            f"the {name} backend needs packages that are not installed ({exc}); "
            f"install them with: pip install 'stagedretry[{provider.extra}]'"
        ) from None
    spec: BackendSpec[Any] = module.BACKEND
    return spec
