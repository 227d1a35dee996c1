"""structlog set up for the command line: coloured console lines and a JSON-lines file.

Every event carries ``item``, ``stage``, ``attempt`` and ``outcome`` (``None``
where they do not apply), and the text of every other value is masked by the
secrets given (the API key, in any case or piece; see :class:`Secrets`):
tracebacks are turned into text first, so they are masked too, and both the
console and the file only ever see the masked event.  Event names, levels,
times, item ids, stage names, outcomes and numbers are structure and are kept.  The
configuration is the command's while it runs and is restored afterwards, so the
library itself never depends on global logging state.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import IO, Any, Final

import structlog
from rich.console import Console
from rich.text import Text

from .._redact import Secrets
from ._files import IOFailures, log_write_failed, open_log

LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
STANDARD_KEYS: Final = ("item", "stage", "attempt", "outcome")
STRUCTURE_KEYS: Final = frozenset(
    {"event", "level", "timestamp", "logger", *STANDARD_KEYS, "status", "trigger", "source", "dest"}
)
"""Event keys whose values are names the code chose, never server text: not masked."""
FILE_ONLY: Final = "file_only"
"""An event key: ``True`` sends the event to the log file only (the command said it already)."""
QUIET: Final = "quiet"
"""An event key: ``True`` keeps the event off the console unless ``--log-level`` was given.

For the events the command also tells in its own words (an interrupt, a stop, an error it
prints): without a level asked for, the reader sees that sentence once, not a raw line too.
"""

EventDict = MutableMapping[str, Any]


def standard_keys(logger: Any, method: str, event: EventDict) -> EventDict:
    """Give every event the four keys a reader filters on."""
    name = event.get("event")
    if name == "transition":
        event.setdefault("stage", event.get("source"))
        event.setdefault("outcome", event.get("trigger"))
    elif name == "item_end":
        event.setdefault("outcome", event.get("status"))
    for key in STANDARD_KEYS:
        event.setdefault(key, None)
    return event


class Redact:
    """Mask each secret in the text of every value of an event, however nested.

    Keys (of the event and of nested mappings), numbers and the values of
    :data:`STRUCTURE_KEYS` are kept.  Run it after
    :func:`structlog.processors.format_exc_info`, so a traceback is text by the
    time it gets here.
    """

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Secrets | Iterable[str | None]) -> None:
        self._secrets = secrets if isinstance(secrets, Secrets) else Secrets(secrets)

    def __call__(self, logger: Any, method: str, event: EventDict) -> EventDict:
        if not self._secrets:
            return event
        for key, value in event.items():
            if key not in STRUCTURE_KEYS:
                event[key] = self._secrets.leaves(value)
        return event


class _Sinks:
    """structlog's final logger: each event rendered for the console and for the file.

    A file that cannot be written (a full disk) is written no more, and the
    failure goes to *failures* once; the console keeps logging.
    """

    def __init__(
        self,
        console: Console | None,
        console_level: int,
        file: IO[str] | None,
        file_level: int,
        *,
        path: Path | None = None,
        failures: IOFailures | None = None,
        asked: bool = False,
    ) -> None:
        self._console = console
        self._asked = asked
        self._console_level = console_level
        self._file = file
        self._file_level = file_level
        self._path = path
        self._failures = failures
        self._pretty = structlog.dev.ConsoleRenderer(
            colors=console is not None and console.is_terminal, sort_keys=True
        )

    def _emit(self, event: EventDict) -> None:
        level = LEVELS.get(str(event.get("level", "info")), logging.INFO)
        file_only = event.pop(FILE_ONLY, False) is True
        file_only |= event.pop(QUIET, False) is True and not self._asked
        if self._file is not None and level >= self._file_level:
            self._write(self._file, json.dumps(event, default=str, ensure_ascii=False) + "\n")
        if self._console is not None and level >= self._console_level and not file_only:
            line = self._pretty(None, "", dict(event))
            self._console.print(Text.from_ansi(str(line)), soft_wrap=True)

    def _write(self, file: IO[str], line: str) -> None:
        try:
            file.write(line)
            file.flush()
        except OSError as exc:
            # Stop first: reporting the failure logs, and must not come back here.
            self._file = None
            path = self._path or Path(file.name)
            log_write_failed("log file", path, exc, self._failures, lost="events")

    def msg(self, event: EventDict) -> None:
        self._emit(event)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _fan_out(logger: Any, method: str, event: EventDict) -> tuple[tuple[EventDict], dict[str, Any]]:
    return (event,), {}


@contextlib.contextmanager
def command_logging(
    console: Console | None,
    *,
    level: str | None,
    log_file: Path | None,
    secrets: Secrets | Iterable[str | None] = (),
    failures: IOFailures | None = None,
) -> Iterator[Any]:
    """Configure structlog for one command and yield a logger for the runner.

    Console lines appear at *level* (default: warnings only, so the progress
    bar stays readable, and without the events marked :data:`QUIET`, which the
    command tells in words); the file gets JSON lines at *level* (default: info).
    Raises :class:`FileIOError` when *log_file* cannot be opened; a write that
    fails later goes to *failures* (raised as :class:`FileIOError` without it).
    """
    console_level = LEVELS[level or "warning"]
    file_level = LEVELS[level or "info"]
    file: IO[str] | None = None
    if log_file is not None:
        file = open_log("log file", log_file)
    floor = min(console_level, file_level) if file is not None else console_level
    sinks = _Sinks(
        console,
        console_level,
        file,
        file_level,
        path=log_file,
        failures=failures,
        asked=level is not None,
    )
    saved = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            standard_keys,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # A traceback becomes text here, before Redact: an exception's message or a
            # frame's source line may hold the key.
            structlog.processors.format_exc_info,
            Redact(secrets),
            _fan_out,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(floor),
        logger_factory=lambda *args: sinks,
        cache_logger_on_first_use=False,
    )
    try:
        yield structlog.get_logger("stagedretry")
    finally:
        structlog.configure(**saved)
        if file is not None:
            with contextlib.suppress(OSError):  # every line was flushed, or reported
                file.close()
