"""The runner's logger: structlog's or the standard library's, refused at once if neither;
the engine's own warnings on stderr, never on stdout where results may be piped."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

import stagedretry as sr
from stagedretry.testing import ScriptedStrategy, ScriptStep, VirtualClock

K = sr.OutcomeKind


class Records(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[tuple[logging.Logger, Records]]:
    logger = logging.getLogger("tests.stagedretry.runner")
    handler = Records()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def unconfigured() -> Iterator[None]:
    """structlog as a program that never configured it finds it."""
    was = structlog.is_configured()
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        yield
    finally:
        if was:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


def script() -> ScriptedStrategy:
    return ScriptedStrategy({"a": [ScriptStep(K.INVALID, fields=["year"])], "b": []})


async def test_a_standard_library_logger_gets_every_event_as_a_record(
    records: tuple[logging.Logger, Records], virtual_clock: VirtualClock
) -> None:
    logger, handler = records
    strategy = script()
    runner = sr.Runner(
        sr.Plan.ladder(),
        strategy,
        validator=strategy.validator(),
        clock=virtual_clock,
        logger=logger,
    )

    batch = await runner.run([("a", "p"), ("b", "p")])

    assert batch.succeeded == 2  # before: every item failed on 'Logger' has no 'bind'
    attempts = [r for r in handler.records if r.stagedretry["event"] == "attempt"]  # type: ignore[attr-defined]
    assert [(r.stagedretry["item"], r.stagedretry["outcome"]) for r in attempts] == [  # type: ignore[attr-defined]
        ("a", "invalid"),
        ("a", "succeeded"),
        ("b", "succeeded"),
    ]
    assert attempts[0].levelno == logging.INFO
    assert attempts[0].getMessage().startswith("attempt item='a' stage='full_t0' attempt=1")
    ends = [r for r in handler.records if r.getMessage().startswith("item_end")]
    assert len(ends) == 2
    assert any(r.levelno == logging.DEBUG for r in handler.records)  # transitions


async def test_the_loggers_level_filters_the_events(
    records: tuple[logging.Logger, Records], virtual_clock: VirtualClock
) -> None:
    logger, handler = records
    logger.setLevel(logging.INFO)
    adapter = logging.LoggerAdapter(logger, {"job": "books"})
    strategy = script()
    runner = sr.Runner(
        sr.Plan.ladder(),
        strategy,
        validator=strategy.validator(),
        clock=virtual_clock,
        logger=adapter,
    )

    await runner.run([("a", "p")])

    assert handler.records
    assert all(r.levelno >= logging.INFO for r in handler.records)


@pytest.mark.parametrize(
    ("logger", "missing"),
    [(print, "bind, debug, info"), (structlog.PrintLogger(), "bind")],
)
def test_anything_else_is_refused_when_the_runner_is_built(logger: object, missing: str) -> None:
    with pytest.raises(TypeError) as raised:
        sr.Runner(sr.Plan.ladder(), script(), logger=logger)  # type: ignore[call-overload]

    assert str(raised.value).endswith(f"(it has no {missing})")
    assert str(raised.value).startswith(
        "logger must be a structlog logger (with bind, debug and info) or a logging.Logger"
    )


@pytest.mark.usefixtures("unconfigured")
def test_the_engines_own_warning_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    sr.Runner(sr.Plan.ladder(), script(), secrets=["short"])

    out, err = capsys.readouterr()
    assert out == ""
    assert "secret_too_short" in err
