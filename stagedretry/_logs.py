"""The runner's logger: a structlog-style one as given, or a standard-library one wrapped.

The runner logs structured events (``attempt``, ``transition``, ``item_end``...)
with key/value pairs through ``bind``, ``debug``, ``info`` and ``warning``.  A
structlog logger has them; a :class:`logging.Logger` (or ``LoggerAdapter``) is
wrapped with structlog's standard-library support, so that each event becomes one
record at its level, filtered by the logger's own level before anything is
rendered.  Without a logger, the few warnings the engine gives itself go to
structlog as the application configured it, or to stderr when it did not
(structlog's own default is stdout, where a program's results may be piped).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_METHODS = ("bind", "debug", "info")


def event_logger(logger: object) -> Any:
    """*logger* ready for the runner's events; raise ``TypeError`` if it is neither kind."""
    if logger is None:
        return None
    if isinstance(logger, logging.Logger | logging.LoggerAdapter):
        return structlog.wrap_logger(
            logger,
            processors=[_by_level, _as_record],
            wrapper_class=structlog.stdlib.BoundLogger,
        )
    missing = [name for name in _METHODS if not callable(getattr(logger, name, None))]
    if missing:
        raise TypeError(
            "logger must be a structlog logger (with bind, debug and info) or a "
            f"logging.Logger, got {type(logger).__name__} (it has no {', '.join(missing)})"
        )
    return logger


def _by_level(logger: logging.Logger | logging.LoggerAdapter[Any], method: str, event: Any) -> Any:
    """Drop an event below *logger*'s level before it is rendered (an adapter's too)."""
    if not logger.isEnabledFor(getattr(logging, method.upper(), logging.INFO)):
        raise structlog.DropEvent
    return event


def _as_record(_: object, __: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """The arguments of one standard-library call: a readable message, and the event's
    values under one record attribute, ``stagedretry`` (whole, for a structured handler)."""
    name = str(event.pop("event", ""))
    values = dict(event)
    text = " ".join([name, *(f"{key}={value!r}" for key, value in values.items())])
    return {"msg": text, "extra": {"stagedretry": {"event": name, **values}}}


def default_logger(name: str) -> Any:
    """structlog's logger *name* as configured; unconfigured, one that prints to stderr."""
    if structlog.is_configured():
        return structlog.get_logger(name)
    return structlog.wrap_logger(structlog.PrintLogger(sys.stderr))
