"""The ``stagedretry`` command: run, demo, estimate, plan show/check, caches list/delete.

Exit codes (one table, :class:`~stagedretry.cli._exit.ExitCode`, documented in
``docs/reference/exit-codes.md``):

* 0 -- every item succeeded, or a command did what it was asked;
* 1 -- the run ended and some items ended ``failed`` or ``exhausted`` (``plan check``:
  some input records would fail with ``input_error``, past ``--max-bad-records``);
* 2 -- a usage or configuration error, always found before any request is sent;
* 3 -- the run stopped on a failure of the run, not of an item (the key, billing, the model);
* 4 -- a file could not be read or written (output, journal, log; a full disk);
* 124 -- ``run.deadline`` passed with items left;
* 129, 130, 143 -- stopped by SIGHUP, Ctrl-C (SIGINT) or SIGTERM with items left.

A run stopped early (124, 129, 130, 143) keeps every finished result in its
journal: the same command finishes the job.  Stopped early with nothing left,
it returns 0 or 1 as a run that was not stopped would.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import attrs
import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from strategies.backend import BackendError, http_url_problem

from .._describe import without_reprs
from .._journal import JournalError, JournalIOError
from .._outcomes import OutcomeKind, PlanError
from .._plan import DEFAULT_TIMEOUT
from .._redact import Secrets
from .._results import ItemStatus
from .._stop import RunStopped
from ._backends import (
    API_KEY_ENV,
    NEEDS_KEY,
    api_key_from_env,
    check_backend,
    command_secrets,
    key_on_loopback,
    key_problem,
    run_api_key,
    short_keys,
)
from ._bad_records import bad_reasons
from ._endpoint import LOOPBACK_KEY, cache_name, is_loopback, server_offset
from ._estimate import (
    DEFAULT_SAMPLE,
    default_mix,
    estimate,
    quota_of,
    render_estimate,
    run_sample,
    sample_of,
)
from ._exit import ExitCode
from ._files import FileIOError, IOFailures, advised
from ._input import InputError, read_input
from ._job import STOP_SIGNALS, StopNow, run_job
from ._logging import LEVELS, command_logging
from ._loop import Ended, exit_now, exits_on_signals, run_bounded
from ._output import OutputBusy
from ._plan_file import PlanFile, load_plan_file
from ._registry import backend_names
from ._retry import parse_statuses
from ._summary import Summary, render_summary
from .pipeline import Pipeline, load_pipeline, parse_override, same_file
from .report import ReportError, ReportIOError, load_source, make_report, write_report

F = TypeVar("F", bound=Callable[..., Any])

CACHES_TIMEOUT_MS = 60_000
"""Each request of ``caches list/delete`` gives up after a minute: no command waits for ever."""


@attrs.define
class App:
    """Where the command writes: results on *out*, progress, logs and errors on *err*.

    *secrets* (the keys in the environment, and the API key once a command
    reads it) are masked in every message the command prints about a failure.
    """

    # soft_wrap: text is never broken into lines, so a path stays whole (and copyable) in a
    # pipe, whatever its width; the terminal wraps long lines itself.  Tables still fit.
    out: Console = attrs.field(factory=lambda: Console(highlight=False, soft_wrap=True))
    err: Console = attrs.field(
        factory=lambda: Console(stderr=True, highlight=False, soft_wrap=True)
    )
    secrets: Secrets = attrs.field(factory=command_secrets)


pass_app = click.make_pass_decorator(App, ensure=True)


_CONTROLS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _shown(text: str) -> str:
    """*text* safe for a terminal, on one line: control characters (an escape sequence from a
    config key, an id or a server's answer, a line break) written as ``\\x1b``, ``\\n``...,
    and object reprs (``<ssl.SSLContext object at 0x7f..>``) named only."""
    return _CONTROLS.sub(
        lambda m: m.group().encode("unicode_escape").decode("ascii"), without_reprs(text)
    )


def _error(app: App, message: str, *, label: tuple[str, str] = ("error: ", "bold red")) -> None:
    """Print *message* on stderr after *label*, its secrets masked and its controls shown."""
    app.err.print(Text.assemble(label, _shown(app.secrets.text(message))), soft_wrap=True)


def _fail(app: App, message: str, code: int = ExitCode.USAGE) -> NoReturn:
    _error(app, message)
    raise SystemExit(code)


def _warn_short_keys(app: App, log: Any) -> None:
    """Say once, on stderr and in the log file, which key is too short to be masked."""
    for name, length in short_keys():
        app.err.print(
            Text(
                f"warning: {name} holds {length} character(s), too short to be an API key: "
                f"it is not masked in what the run writes (keys of {app.secrets.min_length} "
                "or more characters are)",
                style="yellow",
            ),
            soft_wrap=True,
        )
        log.warning("secret_too_short", variable=name, length=length, file_only=True)


# -- shared options ----------------------------------------------------------------------------


def _pipeline_options(func: F) -> F:
    options = [
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="KEY=VALUE",
            help="Override any value of the pipeline file, e.g. --set run.concurrency=8 "
            "--set plan.stages[0].params.temperature=0.1 "
            "(values are TOML; bare words are strings).",
        ),
        click.option(
            "--backend",
            type=click.Choice(backend_names()),
            help="Same as --set backend.kind=...",
        ),
        click.option("--model", help="Same as --set backend.model=..."),
        click.option("--input", "input_path", metavar="PATH", help="Same as --set input.path=..."),
        click.option(
            "--output", "output_path", metavar="PATH", help="Same as --set output.path=..."
        ),
        click.option(
            "--journal", "journal_path", metavar="PATH", help="Same as --set journal.path=..."
        ),
        click.option(
            "--concurrency", type=click.IntRange(min=1), help="Same as --set run.concurrency=..."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _overrides(
    app: App,
    overrides: Sequence[str],
    *,
    backend: str | None = None,
    model: str | None = None,
    input_path: str | None = None,
    output_path: str | None = None,
    journal_path: str | None = None,
    concurrency: int | None = None,
) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    try:
        pairs += [parse_override(text) for text in overrides]
    except PlanError as exc:
        _fail(app, str(exc))
    for key, value in (
        ("backend.kind", backend),
        ("backend.model", model),
        ("input.path", input_path),
        ("output.path", output_path),
        ("journal.path", journal_path),
        ("run.concurrency", concurrency),
    ):
        if value is not None:
            pairs.append((key, value))
    return pairs


def _load(app: App, path: Path, overrides: Sequence[tuple[str, Any]]) -> Pipeline:
    try:
        loaded = load_pipeline(path, overrides=overrides)
    except PlanError as exc:
        _fail(app, str(exc))
    _warn_ignored(app, loaded)
    return loaded


def _warn_ignored(app: App, pipeline: Pipeline) -> None:
    """Say once that another backend's settings (left from a switch of kind) are not used, and
    that a [prices] table has no entry for the model."""
    for warning in (
        pipeline.backend.ignored_warning(pipeline.source.name),
        pipeline.prices_warning(pipeline.source.name),
    ):
        if warning is not None:
            _error(app, warning, label=("warning: ", "yellow"))


def _log_options(func: F) -> F:
    func = click.option(
        "--log-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write every event as a JSON line to this file.",
    )(func)
    return click.option(
        "--log-level",
        type=click.Choice(list(LEVELS)),
        help="Console log level (default: warning); also the file's (default: info).",
    )(func)


def _output_options(func: F) -> F:
    func = click.option(
        "--no-report",
        is_flag=True,
        help="Do not write the report (<output stem>.report.html) at the end.",
    )(func)
    func = click.option("--no-progress", is_flag=True, help="Do not show the live progress bar.")(
        func
    )
    return click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")(func)


# -- the group ---------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="stagedretry", prog_name="stagedretry")
def main() -> None:
    """Run batches of LLM work items through declared, staged retries.

    Start with `stagedretry demo`.
    """


def _execute(
    app: App,
    pipeline: Pipeline,
    *,
    fresh: bool,
    as_json: bool,
    no_progress: bool,
    log_level: str | None,
    log_file: Path | None,
    after: Callable[[], None] | None = None,
    retry: frozenset[ItemStatus] | None = None,
    no_report: bool = False,
) -> NoReturn:
    key = run_api_key(pipeline)
    app.secrets = command_secrets(key)
    try:
        check_backend(pipeline, need_key=True)
    except (BackendError, PlanError) as exc:
        _fail(app, str(exc))
    if log_file is not None:
        _check_log_file(app, pipeline, log_file)
    summary: Summary | None = None
    ended = Ended()
    failures = IOFailures()
    with ExitStack() as stack:
        try:
            log = stack.enter_context(
                command_logging(
                    app.err,
                    level=log_level,
                    log_file=log_file,
                    secrets=app.secrets,
                    failures=failures,
                )
            )
        except FileIOError as exc:
            _fail(app, advised(exc), ExitCode.IO_ERROR)
        _warn_short_keys(app, log)
        try:
            summary = run_bounded(
                run_job(
                    pipeline,
                    console=app.err,
                    log=log,
                    fresh=fresh,
                    progress=not no_progress,
                    api_key=key,
                    secrets=app.secrets,
                    failures=failures,
                    retry=retry,
                ),
                ended,
            )
        except (FileIOError, JournalIOError) as exc:
            # Before any work: a file of the run cannot be written (or read).
            _fail(app, advised(exc), ExitCode.IO_ERROR)
        except (InputError, OutputBusy, JournalError, BackendError, PlanError) as exc:
            _fail(app, str(exc))
        except RunStopped as exc:  # a stop before the runner could report it in the summary
            log.error("run_stopped", reason=str(exc), quiet=True)
            _fail(app, _stopped_sentence(str(exc)), ExitCode.RUN_STOPPED)
        except OSError as exc:
            log.error("run_failed", error=str(exc), quiet=True)
            where = f" ({exc.filename})" if exc.filename else ""
            _fail(app, f"the run stopped: {exc.strerror or exc}{where}", ExitCode.SOME_FAILED)
        except KeyboardInterrupt as exc:
            # The third interrupt: whatever was still in flight is abandoned, not waited for.
            log.warning("run_stopped", reason="keyboard interrupt", quiet=True)
            stop = exc.code if isinstance(exc, StopNow) else ExitCode.INTERRUPTED
            message = (
                "stopped at once; the journal keeps every finished result: run the same "
                "command again to finish the job"
            )
            if ended.left_running:
                _error(app, message)
                exit_now(stop)
            _fail(app, message, stop)
    # Known only here: the log file may fail as the run ends, after the summary was built.
    summary = attrs.evolve(
        summary,
        file_errors=tuple(app.secrets.text(m) for m in failures.messages),
        report_path=None if no_report else _run_report(app, pipeline),
    )
    code = summary.exit_code
    with exits_on_signals(code, STOP_SIGNALS):
        if as_json:
            app.out.print(Text(json.dumps(summary.to_json(), indent=2)), soft_wrap=True)
        else:
            render_summary(summary, app.out)
            if after is not None and not summary.file_errors and summary.run_failure is None:
                after()
        if summary.run_failure is not None:
            _error(
                app,
                _stopped_sentence(
                    summary.run_failure, finished=summary.total - summary.left, left=summary.left
                ),
            )
        if summary.file_errors:
            # The summary first (every result it counts is in the journal), then what failed.
            first, *more = summary.file_errors
            _error(app, first)
            for message in more:
                _error(app, message, label=("also: ", "red"))
    if ended.left_running:
        # Work that ignored its cancellation: Python's own exit would wait for it.
        exit_now(code)
    raise SystemExit(code)


def _run_report(app: App, pipeline: Pipeline) -> Path | None:
    """Write the run's report beside its output; a report that cannot be made is a warning
    (the run's results are safe in the journal, and ``stagedretry report`` makes it later)."""
    try:
        if not pipeline.journal.path.is_file():
            return None  # nothing ran (an empty input, a stop before the journal)
        page, _ = write_report(make_report(load_source(None, pipeline)))
    except Exception as exc:  # whatever fails here, the finished run stands
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if not isinstance(exc, ReportError | JournalError | ReportIOError | OSError):
            reason = f"{type(exc).__name__}: {reason}"
        _error(
            app,
            f"the report was not written ({reason}); `stagedretry report "
            f"{pipeline.output.path}` makes it later",
            label=("warning: ", "yellow"),
        )
        return None
    return page


def _check_log_file(app: App, pipeline: Pipeline, log_file: Path) -> None:
    """Refuse (exit 2) a ``--log-file`` that is a file the run reads or writes: events appended
    to it would corrupt the input, the journal or the pipeline, or be lost in the output."""
    files = {
        "the pipeline file": pipeline.source,
        "input.path": pipeline.input.path,
        "output.path": pipeline.output.path,
        "journal.path": pipeline.journal.path,
        "run.request_log": pipeline.run.request_log,
    }
    for name, path in files.items():
        if path is not None and same_file(log_file, path):
            _fail(app, f"--log-file {str(log_file)!r} must differ from {name} ({str(path)!r})")


def _stopped_sentence(reason: str, *, finished: int | None = None, left: int | None = None) -> str:
    """One sentence for a run stopped by a failure of its own: the cause, what to do, the count."""
    counts = f"; {finished} items finished, {left} left" if left is not None else ""
    # A reason cut short ends in "...": keep the ellipsis, drop only a sentence's full stop.
    cause = reason if reason.endswith("...") else f"{reason.rstrip('.')}."
    return (
        f"the run stopped: {cause} Fix it and run the same command again to finish the job{counts}"
    )


@main.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@_pipeline_options
@click.option(
    "--fresh", is_flag=True, help="Ignore (and forget) this pipeline's results in the journal."
)
@click.option(
    "--retry",
    metavar="STATUSES",
    help="Run again only the items whose latest result has one of these statuses, e.g. "
    "--retry failed,exhausted (with --set to change the model or the plan); the others keep "
    "their latest result.",
)
@_output_options
@_log_options
@pass_app
def run(
    app: App,
    pipeline: Path,
    overrides: tuple[str, ...],
    backend: str | None,
    model: str | None,
    input_path: str | None,
    output_path: str | None,
    journal_path: str | None,
    concurrency: int | None,
    fresh: bool,
    retry: str | None,
    as_json: bool,
    no_progress: bool,
    no_report: bool,
    log_level: str | None,
    log_file: Path | None,
) -> None:
    """Run PIPELINE to the end; run it again to resume after a crash or Ctrl-C.

    --retry failed,exhausted runs again only the items whose latest result in
    the journal has one of those statuses, e.g. with a stronger model:
    --retry failed,exhausted --set backend.model=gemini-2.5-pro.  The output
    keeps one line per item, its latest result; the journal keeps the earlier
    ones.  Stopped, the same command goes on with the items not retried yet.

    Ctrl-C, SIGTERM or SIGHUP once: no new items, those in flight finish, the
    summary is printed.  Twice: the items in flight are cancelled (the next run
    retries them).

    \b
    Exit codes:
      0    every item succeeded
      1    some items ended failed or exhausted
      2    a usage or configuration error (nothing was sent)
      3    the run stopped on a failure of the run (key, billing, model, a ceiling): fix it, rerun
      4    a file could not be read or written (output, journal, log; disk full)
      124  run.deadline passed with items left: rerun to finish
      129  stopped by SIGHUP with items left: rerun to finish
      130  stopped by Ctrl-C (SIGINT) with items left: rerun to finish
      143  stopped by SIGTERM with items left: rerun to finish

    At the end it writes a report beside the output (<output stem>.report.html, and the
    diagram's Mermaid source as .report.mmd): see `stagedretry report --help`.
    """
    pairs = _overrides(
        app,
        overrides,
        backend=backend,
        model=model,
        input_path=input_path,
        output_path=output_path,
        journal_path=journal_path,
        concurrency=concurrency,
    )
    statuses = None
    if retry is not None:
        if fresh:
            _fail(
                app,
                "--retry and --fresh cannot be used together: --fresh forgets the results "
                "that --retry chooses from",
            )
        try:
            statuses = parse_statuses(retry)
        except PlanError as exc:
            _fail(app, str(exc))
    loaded = _load(app, pipeline, pairs)
    _execute(
        app,
        loaded,
        fresh=fresh,
        retry=statuses,
        as_json=as_json,
        no_progress=no_progress,
        log_level=log_level,
        log_file=log_file,
        no_report=no_report,
    )


@contextmanager
def demo_pipeline_path() -> Iterator[Path]:
    """The bundled demo pipeline as a real file, wherever the package is installed."""
    with resources.as_file(resources.files("stagedretry.demo")) as folder:
        yield Path(folder) / "pipeline.toml"


@main.command()
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("stagedretry-demo"),
    show_default=True,
    help="Where the demo writes its output, journal and log.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a value of the demo pipeline.",
)
@_output_options
@_log_options
@pass_app
def demo(
    app: App,
    workdir: Path,
    overrides: tuple[str, ...],
    as_json: bool,
    no_progress: bool,
    no_report: bool,
    log_level: str | None,
    log_file: Path | None,
) -> None:
    """Enrich the bundled book records against an in-process Gemini emulator.

    No key and no network: the emulator injects rate limits (429 with a retry
    delay), overloads (503) and invalid fields, and the engine's stages, shared
    cache and journal deal with them.
    """
    workdir = workdir.resolve()
    pairs = [
        ("output.path", str(workdir / "books.out.jsonl")),
        ("journal.path", str(workdir / "journal.sqlite")),
        *_overrides(app, overrides),
    ]
    with demo_pipeline_path() as path:
        pipeline = _load(app, path, pairs)
        if not as_json:
            app.err.print(
                Text.assemble(
                    ("demo: ", "bold"),
                    f"{pipeline.input.path.name} through the {pipeline.backend.kind} backend "
                    f"({pipeline.backend.model}) with injected 429s, 503s and invalid fields; "
                    f"writing to {workdir}",
                ),
                soft_wrap=True,
            )

        def after() -> None:
            app.out.print(
                Text(
                    f"the demo's pipeline is {path}\n"
                    f"see its plan with: stagedretry plan show {path}",
                    style="dim",
                ),
                soft_wrap=True,
            )

        _execute(
            app,
            pipeline,
            fresh=True,
            as_json=as_json,
            no_progress=no_progress,
            log_level=log_level,
            log_file=log_file,
            after=after,
            no_report=no_report,
        )


# -- report ------------------------------------------------------------------------------------


@main.command("report")
@click.argument("source", required=False, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "page",
    type=click.Path(path_type=Path),
    help="Write the page here (default: <output stem>.report.html beside the output); the "
    "Mermaid source goes beside it, as .mmd.",
)
@click.option(
    "--pipeline",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read this pipeline's journal, plan and prices (for a run that recorded none).",
)
@pass_app
def report_command(app: App, source: Path | None, page: Path | None, pipeline: Path | None) -> None:
    """Draw a run: the plan's diagram with its traffic, tables and a timeline, as one page.

    SOURCE is a run's output file (its journal is found beside it) or its journal.
    It writes a self-contained HTML page (it opens offline: the diagram's renderer,
    mermaid, is inside it) and the diagram's Mermaid source, and prints both paths.
    `stagedretry run` writes the same report at its end.

    \b
    Exit codes:
      0    the report was written
      2    SOURCE is missing, a folder, empty, or neither an output nor a journal
      4    a file could not be read or written
    """
    loaded = _load(app, pipeline, ()) if pipeline is not None else None
    try:
        written = write_report(make_report(load_source(source, loaded)), page)
    except (ReportIOError, JournalIOError) as exc:
        _fail(app, advised(exc), ExitCode.IO_ERROR)
    except (ReportError, JournalError) as exc:
        _fail(app, str(exc))
    except OSError as exc:
        where = exc.filename or source
        _fail(app, f"cannot read {str(where)!r}: {exc.strerror or exc}", ExitCode.IO_ERROR)
    app.out.print(Text(f"report:  {written[0]}\ndiagram: {written[1]}"), soft_wrap=True)


# -- plan --------------------------------------------------------------------------------------


@main.group()
def plan() -> None:
    """Show or check a pipeline's plan."""


@plan.command("show")
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "mermaid", "json"]),
    default="table",
    show_default=True,
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
@pass_app
def plan_show(app: App, pipeline: Path, fmt: str, overrides: tuple[str, ...]) -> None:
    """Print the declared state machine of PIPELINE (a pipeline file, or a bare plan file)."""
    loaded = _load_plan_file(app, pipeline, _overrides(app, overrides))
    declared = loaded.plan
    if fmt == "mermaid":
        app.out.print(Text(declared.to_mermaid().rstrip("\n")), soft_wrap=True)
        return
    if fmt == "json":
        app.out.print(Text(json.dumps(declared.to_dict(), indent=2)), soft_wrap=True)
        return
    table = Table(title=f"{loaded.name}: plan", box=box.SIMPLE_HEAD, title_justify="left")
    limits = [_limits(stage) for stage in declared.stages]
    fallbacks = [_fallbacks(declared.stages, i) for i in range(len(declared.stages))]
    headers = ["stage", "kind", "params", "on invalid", "on transient"]
    if any(fallbacks):
        headers.append("fallbacks")
    if any(limits):
        headers.append("limits")
    for header in headers:
        table.add_column(header, overflow="fold")
    for i, stage in enumerate(declared.stages):
        transient = (
            "retry"
            if stage.on_transient == "retry"
            else _target(declared.stages, i, stage.on_transient)
        )
        row = [
            stage.name,
            stage.kind,
            ", ".join(f"{k}={v}" for k, v in stage.params.items()) or "-",
            _target(declared.stages, i, stage.on_invalid),
            transient,
        ]
        if any(fallbacks):
            row.append(fallbacks[i] or "-")
        table.add_row(*row, *([limits[i] or "-"] if any(limits) else []))
    app.out.print(table)
    budget = [
        f"max_prompts {declared.max_prompts}",
        f"max_rate_limit_waits {declared.max_rate_limit_waits}",
        f"max_resource_lost {declared.max_resource_lost}",
    ]
    if declared.deadline is not None:
        budget.append(f"deadline {declared.deadline:g} s per item")
    if declared.timeout is not None:
        budget.append(f"timeout {declared.timeout:g} s per attempt")
    else:
        budget.append(f"timeout {DEFAULT_TIMEOUT:g} s per attempt (the default)")
    app.out.print(Text("budget: " + ", ".join(budget)))
    app.out.print(
        Text(
            "every stage: succeed -> succeeded; fatal -> failed; rate_limited and resource_lost "
            "-> same stage (not counted), and shed unless a fallback says otherwise; budget or "
            "deadline spent -> exhausted",
            style="dim",
        ),
        soft_wrap=True,
    )


def _limits(stage: Any) -> str:
    parts = []
    if stage.max_attempts is not None:
        parts.append(f"{stage.max_attempts} tries")
    if stage.timeout is not None:
        parts.append(f"{stage.timeout:g} s")
    return ", ".join(parts)


def _fallbacks(stages: Sequence[Any], index: int) -> str:
    """Where a stage's declared fallbacks lead: a shed request, giving up, a near deadline."""
    stage = stages[index]
    parts = []
    if stage.on_shed != "retry":
        parts.append(f"shed -> {_target(stages, index, stage.on_shed)}")
    if stage.on_give_up is not None:
        parts.append(f"give_up -> {_target(stages, index, stage.on_give_up)}")
    if stage.expedite is not None:
        parts.append(f"expedite ({stage.expedite.within:g} s left) -> {stage.expedite.to}")
    return "; ".join(parts)


def _target(stages: Sequence[Any], index: int, target: str) -> str:
    from .._plan import resolve_target

    return resolve_target(stages, index, target)


@plan.command("check")
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
@click.option(
    "--max-bad-records",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="N",
    help="Accept up to N input records that would fail with input_error, and exit 0.",
)
@pass_app
def plan_check(app: App, pipeline: Path, overrides: tuple[str, ...], max_bad_records: int) -> None:
    """Check PIPELINE and its input without sending anything.

    PIPELINE may also be a bare plan file (as Plan.load reads): only the plan
    is checked then.

    \b
    Exit codes:
      0  sound, and no record would fail on input (or at most --max-bad-records)
      1  some records would fail on input (input_error): counted per reason
      2  a usage or configuration error in the file
      4  the input file could not be read
    """
    checked = _load_plan_file(app, pipeline, _overrides(app, overrides))
    loaded = checked.pipeline
    if loaded is None:
        app.out.print(
            Text.assemble(
                ("ok: ", "bold green"),
                f"{pipeline.name}: a bare plan, {_count(len(checked.plan.stages), 'stage')}, "
                f"max {_count(checked.plan.max_prompts, 'prompt')} per item "
                "(no pipeline: no backend or input to check)",
            ),
            soft_wrap=True,
        )
        return
    try:
        check_backend(loaded, need_key=False)
        records = read_input(loaded.input)
    except (BackendError, PlanError, InputError) as exc:
        _fail(app, str(exc))
    except FileIOError as exc:
        _fail(app, advised(exc), ExitCode.IO_ERROR)
    reasons = bad_reasons(records)
    bad = sum(group.count for group in reasons)
    passed = bad <= max_bad_records
    app.out.print(
        Text.assemble(
            ("ok: ", "bold green") if passed else "",
            f"{pipeline.name}: {_count(len(loaded.plan.stages), 'stage')}, "
            f"max {_count(loaded.plan.max_prompts, 'prompt')} per item; "
            f"backend {loaded.backend.kind} ({loaded.backend.model}); "
            f"{_count(len(records), 'item')} in {loaded.input.path.name}",
        ),
        soft_wrap=True,
    )
    for group in reasons[:_SHOWN_REASONS]:
        app.out.print(Text(f"  {_shown(group.describe())}", style="yellow"), soft_wrap=True)
    if len(reasons) > _SHOWN_REASONS:
        rest = reasons[_SHOWN_REASONS:]
        app.out.print(
            Text(
                f"  ... and {len(rest)} more reasons "
                f"({sum(group.count for group in rest)} records)",
                style="yellow",
            )
        )
    if (
        loaded.backend.spec.needs_api_key
        and api_key_from_env() is None
        and not key_on_loopback(loaded)
    ):
        app.out.print(
            Text(f"note: `run` will need {API_KEY_ENV} in the environment", style="yellow")
        )
    if loaded.price is None:
        app.out.print(
            Text(
                f"note: no price for {loaded.backend.model!r} in [prices] nor in genai-prices' "
                "data: no cost report",
                style="dim",
            )
        )
    for model in loaded.models[1:]:
        if loaded.price_for(model) is None:  # a stage's own model: its tokens are left out
            app.out.print(
                Text(
                    f"note: no price for {model!r} (a stage's model) in [prices] nor in "
                    "genai-prices' data: its tokens are left out of the cost report",
                    style="dim",
                )
            )
    if bad and passed:
        app.out.print(
            Text(
                f"note: {bad} of {len(records)} records will fail with input_error "
                f"(accepted: --max-bad-records {max_bad_records})",
                style="yellow",
            ),
            soft_wrap=True,
        )
    if not passed:
        _fail(
            app,
            f"{bad} of {len(records)} records would fail with input_error; fix them, or "
            f"accept them with --max-bad-records {bad}",
            ExitCode.SOME_FAILED,
        )


_SHOWN_REASONS = 10
"""How many reasons for bad records ``plan check`` lists, most frequent first."""


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _load_plan_file(app: App, path: Path, overrides: Sequence[tuple[str, Any]]) -> PlanFile:
    try:
        loaded = load_plan_file(path, overrides)
    except PlanError as exc:
        _fail(app, str(exc))
    if loaded.pipeline is not None:
        _warn_ignored(app, loaded.pipeline)
    return loaded


# -- estimate ----------------------------------------------------------------------------------


@main.command("estimate")
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@_pipeline_options
@click.option(
    "--sample",
    type=click.IntRange(min=0, max=1000),
    default=DEFAULT_SAMPLE,
    show_default=True,
    help="Items run on the in-process emulator to learn the retry mix (0: the defaults).",
)
@click.option("--rpm", type=click.IntRange(min=1), help="Requests per minute of the quota.")
@click.option("--tpm", type=click.IntRange(min=1), help="Input tokens per minute of the quota.")
@click.option("--rpd", type=click.IntRange(min=1), help="Requests per day of the quota.")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
@pass_app
def estimate_command(
    app: App,
    pipeline: Path,
    overrides: tuple[str, ...],
    backend: str | None,
    model: str | None,
    input_path: str | None,
    output_path: str | None,
    journal_path: str | None,
    concurrency: int | None,
    sample: int,
    rpm: int | None,
    tpm: int | None,
    rpd: int | None,
    as_json: bool,
) -> None:
    """Print PIPELINE's expected bill (USD) and time, sending no request to the service.

    Every item's prompt is counted locally; the plan's retry mix comes from
    --sample items run on the in-process emulator (a gemini backend is
    switched to it); the time from the quota ([backend.quota], or --rpm,
    --tpm, --rpd).  Nothing is written: not the output, not the journal.
    """
    pairs = _overrides(
        app,
        overrides,
        backend=backend,
        model=model,
        input_path=input_path,
        output_path=output_path,
        journal_path=journal_path,
        concurrency=concurrency,
    )
    loaded = _load(app, pipeline, pairs)
    try:
        records = read_input(loaded.input)
    except InputError as exc:
        _fail(app, str(exc))
    except FileIOError as exc:
        _fail(app, advised(exc), ExitCode.IO_ERROR)
    runnable = [r for r in records if r.error is None]
    mix = None
    if sample and runnable:
        chosen = sample_of(runnable, sample)
        app.err.print(
            Text(
                f"estimate: running a sample of {len(chosen)} items on the in-process "
                "emulator (no request to the service)",
                style="dim",
            ),
            soft_wrap=True,
        )
        try:
            mix = run_bounded(run_sample(loaded, chosen), Ended())
        except (BackendError, PlanError, ValueError, TypeError) as exc:
            _fail(app, f"the sample cannot run: {exc}")
        except KeyboardInterrupt:
            _fail(app, "interrupted: no estimate was made", ExitCode.INTERRUPTED)
    if mix is None:
        mix = default_mix(loaded)
    found = estimate(loaded, records, mix, quota_of(loaded, {"rpm": rpm, "tpm": tpm, "rpd": rpd}))
    if as_json:
        app.out.print(Text(json.dumps(found.to_json(), indent=2)), soft_wrap=True)
    else:
        render_estimate(found, app.out)


# -- caches ------------------------------------------------------------------------------------


@main.group()
def caches() -> None:
    """List or delete the Gemini context caches stagedretry made."""


def _connection_options(func: F) -> F:
    func = click.option(
        "--api-version",
        type=click.Choice(["v1", "v1beta", "v1alpha"]),
        help="API version (default: the pipeline's, else v1beta).",
    )(func)
    return click.option(
        "--base-url",
        metavar="URL",
        callback=_checked_base_url,
        help="Talk to this Gemini endpoint instead of Google's (default: the pipeline's "
        "base_url), an http(s) URL such as an emulator's http://127.0.0.1:PORT; on loopback "
        "no API key is needed.",
    )(func)


def _checked_base_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    problem = http_url_problem(value) if value is not None else None
    if problem is not None:
        raise click.BadParameter(problem, ctx=ctx, param=param)
    return value


def _client(
    app: App, pipeline: Pipeline | None, base_url: str | None, api_version: str | None
) -> Any:
    if pipeline is not None and pipeline.backend.kind == "vertex":
        return _vertex_client(app, pipeline, base_url, api_version)
    if pipeline is not None and pipeline.backend.kind != "gemini":
        _fail(
            app,
            f"{pipeline.source.name} uses the {pipeline.backend.kind} backend, whose caches "
            "live and end with the run's own process: there is nothing to list or delete",
        )
    try:
        from strategies.gemini import GeminiSection, connect
    except ImportError:
        _fail(app, "the caches commands need google-genai: pip install 'stagedretry[cli]'")
    # A gemini pipeline's section (checked above) says where its caches live.
    section = pipeline.backend.section if pipeline is not None else GeminiSection()
    assert isinstance(section, GeminiSection)
    endpoint = base_url or section.base_url
    key = api_key_from_env()
    if key is None:
        if not is_loopback(endpoint):
            _fail(
                app,
                f"talking to Gemini needs {NEEDS_KEY}; an endpoint on loopback, such as an "
                "emulator's --base-url http://127.0.0.1:PORT, needs none",
            )
        key = LOOPBACK_KEY
    app.secrets = command_secrets(key)
    problem = key_problem(key)
    if problem is not None:
        _fail(app, problem)
    return connect(
        key,
        api_version=api_version or section.api_version,
        base_url=endpoint,
        timeout_ms=CACHES_TIMEOUT_MS,
    )


def _vertex_client(
    app: App, pipeline: Pipeline, base_url: str | None, api_version: str | None
) -> Any:
    """A Vertex AI client for a vertex pipeline's caches: its project and location, with the
    Application Default Credentials (never an API key)."""
    from strategies.gemini.vertex import VertexSection, section_client

    section = pipeline.backend.section
    assert isinstance(section, VertexSection)
    try:
        if api_version is not None:
            section = attrs.evolve(section, api_version=api_version)
        return section_client(section, base_url=base_url, timeout_ms=CACHES_TIMEOUT_MS)
    except (BackendError, PlanError) as exc:
        _fail(app, str(exc))


def _call_failure(exc: BaseException) -> tuple[str, int]:
    """A failed call of a caches command: a short sentence, and 3 if the key or the account is
    at fault (as for a run), else 1."""
    from strategies.gemini import classify

    outcome = classify(exc)
    if outcome is None:
        return str(exc) or type(exc).__name__, ExitCode.SOME_FAILED
    if outcome.kind is OutcomeKind.STOP_RUN:
        if api_key_from_env() is None:  # the loopback placeholder was sent
            return (
                f"{outcome.message.rstrip('.')}; no key was set: put the key this endpoint "
                f"wants in {API_KEY_ENV} and run the same command again",
                ExitCode.RUN_STOPPED,
            )
        return (
            f"{outcome.message.rstrip('.')}; fix it and run the same command again",
            ExitCode.RUN_STOPPED,
        )
    return outcome.message, ExitCode.SOME_FAILED


@contextmanager
def _talking_to(app: App, client: Any, doing: str) -> Iterator[None]:
    """Turn a failure of a caches command into one line and an exit code; close the client."""
    try:
        yield
    except PlanError as exc:
        _fail(app, str(exc))
    except Exception as exc:
        message, code = _call_failure(exc)
        _fail(app, f"{doing} failed: {message}", code)
    finally:
        client.close()


def _display_names_of(pipeline: Pipeline, client: Any) -> tuple[str, ...]:
    """The display names of the pipeline's caches: one per model its stages name (the
    backend's model first), in the plan's order."""
    from strategies.gemini import GeminiContextCache

    cache = pipeline.cache
    if cache is None or not cache.options.enabled:
        raise PlanError(f"{pipeline.source.name}: cache", "this pipeline declares no cache")
    models = [pipeline.backend.model]
    for stage in pipeline.plan.stages:
        model = stage.params.get("model")
        if isinstance(model, str) and model and model not in models:
            models.append(model)
    names = [
        GeminiContextCache(
            client,
            model,
            system_instruction=cache.system_instruction,
            ttl=cache.options.ttl,
            renew_margin=cache.options.renew_margin,
            tag=cache.options.tag,
        ).display_name
        for model in models
    ]
    return tuple(dict.fromkeys(names))


def _ours(display_name: str | None) -> bool:
    return bool(display_name) and str(display_name).startswith("stagedretry:")


def _life_left(expire: float | None, set_at: datetime.datetime | None, now: float) -> float | None:
    """Seconds a cache has left (to 0.1 s) at the server's *now*, never more than from the
    last time the server set it (``update_time``, else ``create_time``) to its end: the
    ``Date`` the offset comes from names only a whole second."""
    if expire is None:
        return None
    left = expire - now
    if set_at is not None:
        left = min(left, expire - set_at.timestamp())
    return round(left, 1)


@caches.command("list")
@click.option(
    "--pipeline",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Mark the caches this pipeline uses.",
)
@click.option("--all", "show_all", is_flag=True, help="Also list caches stagedretry did not make.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_connection_options
@pass_app
def caches_list(
    app: App,
    pipeline: Path | None,
    show_all: bool,
    as_json: bool,
    base_url: str | None,
    api_version: str | None,
) -> None:
    """List the context caches stagedretry made (their display name starts with 'stagedretry:')."""
    loaded = _load(app, pipeline, ()) if pipeline is not None else None
    client = _client(app, loaded, base_url, api_version)
    rows = []
    with _talking_to(app, client, "listing the caches"):
        wanted = _display_names_of(loaded, client) if loaded is not None else ()
        sent = time.time()
        pager = client.caches.list(config={"page_size": 100})
        # expire_time is on the server's clock: read its now off the list's Date header.
        response = getattr(pager, "sdk_http_response", None)
        offset = server_offset(getattr(response, "headers", None), sent=sent, received=time.time())
        now = time.time() + (offset or 0.0)
        for cached in pager:
            if not show_all and not _ours(cached.display_name):
                continue
            expire = cached.expire_time.timestamp() if cached.expire_time is not None else None
            left = _life_left(expire, cached.update_time or cached.create_time, now)
            usage = cached.usage_metadata
            rows.append(
                {
                    "name": cached.name,
                    "display_name": cached.display_name,
                    "model": cached.model,
                    "expire_time": cached.expire_time.isoformat() if cached.expire_time else None,
                    "expires_in": left,
                    "tokens": usage.total_token_count if usage is not None else None,
                    "matches_pipeline": cached.display_name in wanted,
                }
            )
    if as_json:
        app.out.print(Text(json.dumps(rows, indent=2)), soft_wrap=True)
        return
    if not rows:
        app.out.print(Text("no caches made by stagedretry" if not show_all else "no caches"))
        return
    for row in rows:
        left = row["expires_in"]
        # The name on a line of its own, never cut or folded, whatever the terminal's width:
        # it is what `caches delete` takes.  What the server says is text, never markup, and
        # shown without its control characters.
        mark = " (this pipeline's)" if row["matches_pipeline"] else ""
        app.out.print(
            Text(_shown(str(row["name"])) + mark, style="bold green" if mark else "bold"),
            soft_wrap=True,
        )
        details = [
            f"display name {_shown(str(row['display_name']))}",
            f"model {_shown(str(row['model']))}",
            f"expires in {left / 60:.1f} min" if left is not None else "expires ?",
            f"{row['tokens']} tokens" if row["tokens"] is not None else "? tokens",
        ]
        app.out.print(Text("  " + ", ".join(details)), soft_wrap=True)


@caches.command("delete")
@click.argument("names", nargs=-1)
@click.option(
    "--all-matching",
    "pipeline",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Delete every cache made for this pipeline (same model, instruction and tag).",
)
@_connection_options
@pass_app
def caches_delete(
    app: App,
    names: tuple[str, ...],
    pipeline: Path | None,
    base_url: str | None,
    api_version: str | None,
) -> None:
    """Delete the caches NAMES, or every cache made for a pipeline with --all-matching."""
    if bool(names) == (pipeline is not None):
        raise click.UsageError("give cache NAMES or --all-matching PIPELINE (one of the two)")
    for name in names:
        if cache_name(name) is None:
            raise click.UsageError(
                f"{_shown(repr(name))} is not a cache name: give it as `caches list` prints it "
                "(cachedContents/ID, or the ID alone)"
            )
    loaded = _load(app, pipeline, ()) if pipeline is not None else None
    client = _client(app, loaded, base_url, api_version)
    failed = 0
    stop = 0
    with _talking_to(app, client, "deleting the caches"):
        targets = [str(cache_name(n)) for n in names]
        if loaded is not None:
            wanted = _display_names_of(loaded, client)
            targets = [
                c.name
                for c in client.caches.list(config={"page_size": 100})
                if c.display_name in wanted and c.name
            ]
            if not targets:
                app.out.print(Text(f"no cache matches {loaded.source.name} ({', '.join(wanted)})"))
        for name in targets:
            try:
                client.caches.delete(name=name)
            except Exception as exc:
                failed += 1
                message, code = _call_failure(exc)
                app.err.print(
                    Text(
                        _shown(app.secrets.text(f"could not delete {name}: {message}")), style="red"
                    ),
                    soft_wrap=True,
                )
                if code == ExitCode.RUN_STOPPED:
                    # The key or the account: every other name would fail the same way.
                    stop = code
                    break
            else:
                app.out.print(Text(f"deleted {name}"))
    if stop:
        raise SystemExit(stop)
    if failed:
        raise SystemExit(ExitCode.SOME_FAILED)
