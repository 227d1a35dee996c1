"""Reading a pipeline file: overrides applied, every section checked, errors naming file and path.

Flat sections are read with :func:`stagedretry.parse_settings` into their
typed classes; only what names files (the input, the instruction, the output
model or schema, the journal, the request log) is read by hand, relative to the
pipeline file (or, for a value given with ``--set``, to the current directory).
The backend's own settings are read into its spec's ``section_type``, and the
plan's stage params are checked against its ``params_type`` here, so ``plan
check`` and ``run`` refuse them before anything is sent.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar

import attrs

from stagedretry import Plan, PlanError, parse_settings, settable_keys, stage_params
from stagedretry._describe import describe, key_name
from stagedretry._documents import MAX_DOCUMENT_BYTES, load_document
from stagedretry._plan import PLAN_KEYS
from strategies.backend import BackendError, CacheOptions

from .._registry import backend_names, backend_spec
from ._model import (
    DEFAULT_BACKEND,
    DEFAULT_MODEL,
    BackendConfig,
    CacheConfig,
    InputConfig,
    JournalConfig,
    OutputConfig,
    Pipeline,
    RunConfig,
)
from ._output_model import import_model, model_digest, parse_schema, schema_digest
from ._overrides import apply_override
from ._prices import Price
from ._template import Template

T = TypeVar("T")

SECTIONS: Final = (
    "name",
    "plan",
    "backend",
    "cache",
    "input",
    "output",
    "journal",
    "run",
    "prices",
)
_NAME_OK: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
APP_BACKEND_KEYS: Final = ("kind", "model")
"""The keys of ``[backend]`` the app reads; the rest is the backend spec's section."""
INPUT_KEYS: Final = ("path", "id_field", "template", "template_file")
OUTPUT_KEYS: Final = ("path", "model", "schema")
JOURNAL_KEYS: Final = ("path",)
CACHE_FILE_KEYS: Final = ("system_instruction",)
"""The keys of ``[cache]`` read by hand (a path); the rest are :class:`CacheOptions`."""
RUN_FILE_KEYS: Final = ("request_log",)
"""The keys of ``[run]`` read by hand (a path); the rest are :class:`RunConfig`'s settings."""


class _Reader:
    """Reads one file's sections with errors prefixed by ``file: section.key``."""

    def __init__(self, file: str, base: Path, cwd: Path, overridden: Iterable[str]) -> None:
        self.file = file
        self.base = base
        self.cwd = cwd
        self.overridden = tuple(overridden)

    def error(self, path: str, problem: str) -> PlanError:
        note = ""
        for key in self.overridden:
            if path == key or path.startswith((key + ".", key + "[")) or key.startswith(path + "."):
                note = " (set on the command line)"
                break
        return PlanError(f"{self.file}: {path}", problem + note)

    @contextlib.contextmanager
    def located(self) -> Iterator[None]:
        """Turn a :class:`PlanError` raised inside into one located in this file."""
        try:
            yield
        except PlanError as exc:
            raise self.error(exc.path, exc.problem) from None

    def settings(self, cls: type[T], data: object, where: str) -> T:
        with self.located():
            return parse_settings(cls, data, where)

    def table(self, value: object, path: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected a table, got {describe(value)}")
        return dict(value)

    def keys(self, table: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
        """Refuse a key not in *allowed*, in :func:`stagedretry.parse_settings`' words."""
        for key in table:
            if key not in allowed:
                name = key_name(key)
                where = f"{path}.{name}" if path else name
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.error(where, f"unknown key ({hint}known: {', '.join(allowed)})")

    def string(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            raise self.error(path, f"expected a string, got {describe(value)}")
        if not value.strip():
            raise self.error(path, "expected a non-empty string")
        return value

    def path(self, value: object, key: str) -> Path:
        """A path from the file (relative to it) or from ``--set`` (relative to the cwd)."""
        given = Path(self.string(value, key)).expanduser()
        if given.is_absolute():
            return given
        return (self.cwd if key in self.overridden else self.base) / given

    def text(self, path: Path, key: str) -> str:
        """The UTF-8 text of the file *path* that *key* names (a byte order mark skipped)."""
        if path.exists() and not path.is_file():
            # A FIFO would block the read for ever, a device never end.
            raise self.error(key, f"{str(path)!r} is not a regular file")
        try:
            return path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise self.error(key, f"cannot read {str(path)!r}: {_why(exc)}") from None


def same_file(a: Path, b: Path) -> bool:
    """Whether *a* and *b* name one file: the same path once resolved, or links to one file."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def _size(path: Path) -> int:
    """The size of *path* in bytes, 0 when it cannot be read (reading it then says why)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(exc)


def load_pipeline(
    path: str | Path,
    *,
    overrides: Sequence[tuple[str, Any]] = (),
    cwd: Path | None = None,
) -> Pipeline:
    """Read, override and check a pipeline file.

    Relative paths in the file are relative to the file; relative paths given
    in *overrides* are relative to *cwd* (the current directory by default).
    Raises :class:`~stagedretry.PlanError` naming the file and the dotted path
    of the first mistake.
    """
    source = Path(path)
    if not source.exists():
        raise PlanError(str(source), "no such pipeline file")
    data = load_document(source)
    for key, value in overrides:
        apply_override(data, key, value)
    cwd = (cwd or Path.cwd()).resolve()
    source = source.resolve()
    overridden = {k.replace('"', "") for k, _ in overrides}
    return _parse(data, _Reader(source.name, source.parent, cwd, overridden), source)


def _parse(data: dict[str, Any], r: _Reader, source: Path) -> Pipeline:
    stray = [key for key in data if key in PLAN_KEYS]
    if stray:
        # A bare plan (what Plan.load and `plan show` read) given where a pipeline is needed.
        raise r.error(
            stray[0],
            "a plan's key at the top level of a pipeline file: put the plan's keys under [plan]"
            if "plan" in data
            else "a plan's key at the top level: this is a bare plan file (as Plan.load reads "
            "it); a pipeline puts the plan under [plan] and adds an [input] with a path and "
            "a template",
        )
    r.keys(data, SECTIONS, "")
    name = source.stem
    if "name" in data:
        name = r.string(data["name"], "name")
        if not _NAME_OK.match(name):
            raise r.error("name", "expected letters, digits, '_', '-' or '.' (at most 64)")

    if "plan" not in data:
        raise r.error("plan", "missing: a pipeline needs a [plan] with at least one stage")
    plan_table = r.table(data["plan"], "plan")  # outside: its error is located already
    with r.located():
        plan = Plan.from_dict(plan_table, where="plan")

    backend = _backend(r, data.get("backend", {"kind": DEFAULT_BACKEND}))
    with r.located():
        # The plan as this backend will send it: refused now rather than on every item.
        stage_params(plan, backend.spec.params_type, where="plan")
    cache = _cache(r, data["cache"]) if "cache" in data else None
    if "input" not in data:
        raise r.error("input", "missing: a pipeline needs an [input] with a path and a template")
    input_ = _input(r, r.table(data["input"], "input"))
    output = _output(r, r.table(data.get("output", {}), "output"), input_)
    journal_table = r.table(data.get("journal", {}), "journal")
    r.keys(journal_table, JOURNAL_KEYS, "journal")
    journal = JournalConfig(
        r.path(journal_table["path"], "journal.path")
        if "path" in journal_table
        else output.path.with_name(output.path.stem + ".journal.sqlite")
    )
    run = _run(r, r.table(data.get("run", {}), "run"))
    prices = _prices(r, r.table(data.get("prices", {}), "prices"))
    if same_file(journal.path, output.path):
        raise r.error("journal.path", "must differ from output.path")
    # A file the run writes must be none of the files it reads (through a symlink or a hard
    # link too): the run would overwrite them.
    request_log = run.request_log
    if request_log is not None:
        for name, other in (
            ("the pipeline file", source),
            ("input.path", input_.path),
            ("output.path", output.path),
            ("journal.path", journal.path),
        ):
            if same_file(request_log, other):
                raise r.error("run.request_log", f"must differ from {name}")
    for key, written in (("output.path", output.path), ("journal.path", journal.path)):
        if same_file(written, input_.path):
            raise r.error(key, "must differ from input.path (the input would be overwritten)")
        if same_file(written, source):
            raise r.error(key, "must differ from the pipeline file (it would be overwritten)")
        if written.exists() and not written.is_file() and not written.is_dir():
            # A folder fails to be written as any unwritable path does (exit 4).
            raise r.error(key, f"{str(written)!r} is not a regular file")
        if key == "output.path" and written.is_symlink():
            # The output is replaced by a rename, which replaces a link, not what it points
            # to: /dev/stdout would become a regular file for every program on the machine.
            raise r.error(key, f"{str(written)!r} is a symbolic link: name the file itself")
    pipeline = Pipeline(
        source=source,
        name=name,
        plan=plan,
        backend=backend,
        input=input_,
        output=output,
        journal=journal,
        run=run,
        cache=cache,
        prices=prices,
    )
    if run.max_cost_usd is not None and pipeline.price is None:
        raise r.error(
            "run.max_cost_usd",
            f"no price is known for the model {backend.model!r}, so the cost cannot be "
            f'counted: add a [prices."{backend.model}"] table',
        )
    return pipeline


def _backend(r: _Reader, raw: object) -> BackendConfig:
    if isinstance(raw, str):
        raw = {"kind": raw}
    table = r.table(raw, "backend")
    kinds = backend_names()
    kind = table.get("kind", DEFAULT_BACKEND)
    if not isinstance(kind, str) or kind not in kinds:
        raise r.error(
            "backend.kind", f"unknown backend {kind!r} (expected one of {', '.join(kinds)})"
        )
    try:
        spec = backend_spec(kind)
    except BackendError as exc:
        raise r.error("backend.kind", str(exc)) from None
    model = r.string(table.get("model", DEFAULT_MODEL), "backend.model").removeprefix("models/")
    section = {k: v for k, v in table.items() if k not in APP_BACKEND_KEYS}
    # Another backend's own table ([backend.emulator] under kind = "gemini") is left unread, so
    # switching kind is a one-line edit; it is named in a warning, and it is not part of the
    # fingerprint.  A key that no backend knows is still refused below.
    ignored = tuple(
        key
        for key in section
        if key in kinds and key != kind and key not in settable_keys(spec.section_type)
    )
    for key in ignored:
        del section[key]
    config = BackendConfig(spec, model, r.settings(spec.section_type, section, "backend"))
    return attrs.evolve(config, ignored=tuple(f"backend.{key}" for key in ignored))


def _cache(r: _Reader, raw: object) -> CacheConfig:
    table = r.table(raw, "cache")
    r.keys(table, (*CACHE_FILE_KEYS, *settable_keys(CacheOptions)), "cache")
    if "system_instruction" not in table:
        raise r.error(
            "cache.system_instruction", "missing: the path of a file holding the shared instruction"
        )
    path = r.path(table.pop("system_instruction"), "cache.system_instruction")
    text = r.text(path, "cache.system_instruction")
    if not text.strip():
        raise r.error("cache.system_instruction", f"{str(path)!r} is empty")
    return CacheConfig(text, path, r.settings(CacheOptions, table, "cache"))


def _input(r: _Reader, table: dict[str, Any]) -> InputConfig:
    r.keys(table, INPUT_KEYS, "input")
    if "path" not in table:
        raise r.error("input.path", "missing: the JSONL file of records")
    path = r.path(table["path"], "input.path")
    if not path.is_file():
        raise r.error("input.path", f"{str(path)!r} is not a readable file")
    id_field = r.string(table.get("id_field", "id"), "input.id_field")
    if "template" in table and "template_file" in table:
        raise r.error("input.template_file", "give either input.template or input.template_file")
    if "template" in table:
        where = "input.template"
        text = r.string(table["template"], where)
    elif "template_file" in table:
        where = "input.template_file"
        text = r.text(r.path(table["template_file"], where), where)
    else:
        raise r.error("input.template", "missing: the prompt, with {field} placeholders")
    with r.located():
        template = Template.parse(text, where)
    return InputConfig(path=path, template=template, id_field=id_field)


def _output(r: _Reader, table: dict[str, Any], input_: InputConfig) -> OutputConfig:
    r.keys(table, OUTPUT_KEYS, "output")
    if "path" in table:
        path = r.path(table["path"], "output.path")
    else:
        path = input_.path.with_name(input_.path.stem + ".out.jsonl")
    if "model" in table and "schema" in table:
        raise r.error("output.schema", "give either output.model or output.schema, not both")
    if "model" in table:
        spec = r.string(table["model"], "output.model")
        with r.located():
            model_class = import_model(spec, r.base)
            digest = model_digest(model_class, spec)
        return OutputConfig(path, model=spec, model_class=model_class, digest=digest)
    if "schema" in table:
        schema_path = r.path(table["schema"], "output.schema")
        if _size(schema_path) > MAX_DOCUMENT_BYTES:
            raise r.error(
                "output.schema",
                f"{str(schema_path)!r} is larger than the limit of {MAX_DOCUMENT_BYTES} bytes",
            )
        text = r.text(schema_path, "output.schema")
        with r.located():
            schema = parse_schema(text, schema_path.name)
        return OutputConfig(
            path,
            schema_path=schema_path,
            schema=MappingProxyType(dict(schema)),
            digest=schema_digest(schema),
        )
    return OutputConfig(path)


def _run(r: _Reader, table: dict[str, Any]) -> RunConfig:
    r.keys(table, (*settable_keys(RunConfig), *RUN_FILE_KEYS), "run")
    log = r.path(table.pop("request_log"), "run.request_log") if "request_log" in table else None
    return attrs.evolve(r.settings(RunConfig, table, "run"), request_log=log)


def _prices(r: _Reader, table: dict[str, Any]) -> dict[str, Price]:
    out: dict[str, Price] = {}
    for model, entry in table.items():
        here = f'prices."{model}"' if "." in model else f"prices.{model}"
        # Keyed as backend.model is read: the API's "models/" prefix is optional in both.
        name = model.removeprefix("models/")
        if name in out:
            raise r.error(here, f"the model {name!r} has a price already")
        out[name] = r.settings(Price, entry, here)
    return out
