"""Hypothesis entry-point plugin: teaches ``st.from_type`` about stagedretry's types."""

from __future__ import annotations


def _hypothesis_setup_hook() -> None:
    """Called by hypothesis when it is imported (see the ``hypothesis`` entry point)."""
