"""Hypothesis entry-point plugin: ``st.from_type`` learns stagedretry's types.

Hypothesis calls the hook when it is imported; the strategies themselves are
built on first use, so the hook stays cheap.
"""

from __future__ import annotations


def _hypothesis_setup_hook() -> None:
    """Register strategies for ``Plan``, ``Backoff`` and ``ScriptStep``."""
    from hypothesis import strategies as st

    from .._plan import Backoff, Plan
    from ._scripted import ScriptStep

    def lazily(name: str) -> st.SearchStrategy[object]:
        def build() -> st.SearchStrategy[object]:
            from . import _generators

            factory: object = getattr(_generators, name)
            assert callable(factory)
            strategy = factory()
            assert isinstance(strategy, st.SearchStrategy)
            return strategy

        return st.deferred(build)

    st.register_type_strategy(Plan, lazily("plans"))
    st.register_type_strategy(Backoff, lazily("backoffs"))
    st.register_type_strategy(ScriptStep, lazily("outcomes"))
