"""The pipeline file: one declared job, parsed once into typed objects.

A pipeline (TOML, or YAML) names the plan, the backend, the shared cache, the
input and its prompt template, the output model, the journal, the run's limits
and a price table.  :func:`load_pipeline` reads it, applies command-line
overrides and checks everything before any request is sent; every mistake is a
:class:`PlanError` naming the file, the dotted path of the value and what was
expected.

The sections (relative paths are relative to the pipeline file; those given
with ``--set`` are relative to the current directory)::

    name = "books"                      # default: the file's stem
    [plan]                              # the schema of Plan.from_dict
    [backend]                           # or backend = "sim"
    kind = "gemini" | "emulator" | "sim"   model = "gemini-2.5-flash"
    api_version = "v1beta"              base_url = "..."   (gemini only)
    [backend.emulator]                  seed, invalid_rate, invalid_rate_slope, latency,
                                        min_cache_tokens, expiry_style, [[...faults]]
    [backend.sim]                       the knobs of strategies.sim.SimModel: seed,
                                        invalid_rate, temperature_slope, transient_rate,
                                        rate_limit_rate, retry_after, latency
    [cache]                             system_instruction = "file", enabled, ttl,
                                        renew_margin, on_close = "keep" | "delete", tag
    [input]                             path, id_field = "id", template | template_file
    [output]                            path, model = "module:Class" | schema = "file.json"
                                        (a module beside the pipeline file comes first)
    [journal]                           path (default: beside the output)
    [run]                               concurrency, deadline (whole run, s), seed, request_log
    [prices."<model>"]                  input, cached_input, output (per 1M tokens),
                                        cache_storage (per 1M tokens per hour)
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import math
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs

from strategies.sim import SimModel

from ._describe import describe as _show
from ._outcomes import PlanError
from ._plan import Plan, _int, _seconds, _str, load_document

if TYPE_CHECKING:
    from strategies.gemini.emulator import ExpiryStyle, FaultKind

E = TypeVar("E", bound=enum.Enum)

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
DEFAULT_MODEL: Final = "gemini-2.5-flash"
_NAME_OK: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BackendKind(enum.Enum):
    """Where requests go: Gemini itself, the in-process emulator, or the offline simulator."""

    GEMINI = "gemini"
    EMULATOR = "emulator"
    SIM = "sim"


class CacheClose(enum.Enum):
    """What happens to the provider-side cache when the run ends."""

    KEEP = "keep"
    DELETE = "delete"


# -- the typed configuration ------------------------------------------------------------------


@attrs.frozen
class FaultSpec:
    """One fault the emulator injects (see ``strategies.gemini.emulator.Fault``)."""

    kind: FaultKind
    rate: float | None = None
    at: tuple[int, ...] | None = None
    times: int | None = None
    route: str = "generateContent"
    retry_delay: float | None = 2.0
    retry_after_header: bool = False
    delay: float = 1.0


@attrs.frozen
class EmulatorSettings:
    """The in-process Gemini emulator's knobs."""

    seed: int = 0
    invalid_rate: float = 0.15
    invalid_rate_slope: float = 0.4
    latency: float = 0.0
    min_cache_tokens: int = 1024
    expiry_style: ExpiryStyle | None = None
    """``None``: the emulator's own default (Gemini's)."""
    faults: tuple[FaultSpec, ...] = ()


@attrs.frozen
class BackendConfig:
    """Which backend answers, with which model."""

    kind: BackendKind = BackendKind.EMULATOR
    model: str = DEFAULT_MODEL
    api_version: str = "v1beta"
    base_url: str | None = None
    emulator: EmulatorSettings = EmulatorSettings()
    sim: SimModel = attrs.field(factory=SimModel)
    """The simulator's knobs; its ``fields`` and ``instructions_tokens`` are set per run."""


@attrs.frozen
class CacheConfig:
    """The shared system instruction and the provider-side cache that holds it.

    With ``enabled = false`` the instruction is sent inline with every request.
    """

    system_instruction: str = attrs.field(repr=False)
    instruction_path: Path
    enabled: bool = True
    ttl: float = 3600.0
    renew_margin: float = 300.0
    on_close: CacheClose = CacheClose.KEEP
    tag: str | None = None


class MissingField(KeyError):
    """A template field is not in the record."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field

    def __str__(self) -> str:
        return f"the record has no field {self.field!r} used by the prompt template"


_PLACEHOLDER: Final = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_FIELD_PATH: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")


@attrs.frozen
class Template:
    """A prompt template: ``{field}`` or ``{field.sub}`` over a record; ``{{``/``}}`` are braces.

    Deliberately not ``str.format``: a record can only be read, never have its
    attributes walked.
    """

    text: str
    parts: tuple[str | tuple[str, ...], ...] = attrs.field(repr=False, eq=False)

    @classmethod
    def parse(cls, text: str, where: str = "template") -> Template:
        """Parse *text*, or raise :class:`PlanError` naming the bad placeholder."""
        parts: list[str | tuple[str, ...]] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(text):
            parts.append(text[pos : match.start()])
            token = match.group(0)
            if token in ("{{", "}}"):
                parts.append(token[0])
            elif token in ("{", "}"):
                raise PlanError(
                    where,
                    f"unbalanced {token!r} at character {match.start() + 1} "
                    "(write {{ or }} for a literal brace)",
                )
            else:
                name = match.group(1).strip()
                if not _FIELD_PATH.match(name):
                    raise PlanError(
                        where,
                        f"{token!r} is not a field placeholder "
                        "(expected {field} or {field.sub})",
                    )
                parts.append(tuple(name.split(".")))
            pos = match.end()
        parts.append(text[pos:])
        fields = [p for p in parts if isinstance(p, tuple)]
        if not fields:
            raise PlanError(where, "the template uses no {field} of the record")
        return cls(text, tuple(p for p in parts if p != ""))

    @property
    def fields(self) -> tuple[str, ...]:
        """The dotted field paths the template reads, in order of first use."""
        seen: dict[str, None] = {}
        for part in self.parts:
            if isinstance(part, tuple):
                seen.setdefault(".".join(part), None)
        return tuple(seen)

    def render(self, record: Mapping[str, Any]) -> str:
        """The prompt for *record*; raise :class:`MissingField` for an absent field."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value: Any = record
            for key in part:
                if not isinstance(value, Mapping) or key not in value:
                    raise MissingField(".".join(part))
                value = value[key]
            if value is None:
                raise MissingField(".".join(part))
            out.append(_as_text(value))
        return "".join(out)


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@attrs.frozen
class InputConfig:
    """The JSONL input, the field holding each record's id and the prompt template."""

    path: Path
    template: Template
    id_field: str = "id"


@attrs.frozen
class OutputConfig:
    """Where results go and what a valid answer is.

    ``model`` is a ``module:Class`` pydantic import path; ``schema`` a JSON
    Schema loaded from ``schema_path``.  Neither: any JSON object is valid.
    ``digest`` is a hash of the shape a valid answer has (the model's JSON
    schema, or the schema file's content): editing either changes it.
    """

    path: Path
    model: str | None = None
    model_class: type[Any] | None = attrs.field(default=None, eq=False, repr=False)
    schema_path: Path | None = None
    schema: Mapping[str, Any] | None = attrs.field(default=None, eq=False, repr=False)
    digest: str | None = None


@attrs.frozen
class JournalConfig:
    """Where the crash-safe journal lives."""

    path: Path


@attrs.frozen
class RunConfig:
    """Limits of one run: parallel items, a deadline for the whole run, an audit log."""

    concurrency: int = 16
    deadline: float | None = None
    seed: int | None = None
    request_log: Path | None = None


@attrs.frozen
class Price:
    """Prices in currency units per million tokens; storage per million tokens per hour."""

    input: float
    cached_input: float
    output: float
    cache_storage: float = 0.0


def _frozen_prices(value: Mapping[str, Price]) -> Mapping[str, Price]:
    return MappingProxyType(dict(value))


@attrs.frozen
class Pipeline:
    """A whole job, checked."""

    source: Path
    name: str
    plan: Plan
    backend: BackendConfig
    input: InputConfig
    output: OutputConfig
    journal: JournalConfig
    run: RunConfig = RunConfig()
    cache: CacheConfig | None = None
    prices: Mapping[str, Price] = attrs.field(factory=dict, converter=_frozen_prices)

    @property
    def price(self) -> Price | None:
        """The price of the backend's model, if the table has it."""
        return self.prices.get(self.backend.model)

    @property
    def fingerprint(self) -> str:
        """A hash of everything that decides an item's result.

        Paths, concurrency, prices, logging and a simulated backend's latency
        are left out: changing them keeps the journal's results valid.  The
        plan, the model, the instruction, the template and the output model
        (its import path and its JSON schema) are in.
        """
        backend: dict[str, Any] = {"kind": self.backend.kind.value, "model": self.backend.model}
        if self.backend.kind is BackendKind.EMULATOR:
            backend["emulator"] = _knobs(self.backend.emulator)
        elif self.backend.kind is BackendKind.SIM:
            backend["sim"] = _knobs(self.backend.sim, SIM_KNOBS)
        cache = None
        if self.cache is not None:
            cache = {
                "instruction": _sha(self.cache.system_instruction),
                "enabled": self.cache.enabled,
            }
        output = {"model": self.output.model, "shape": self.output.digest}
        data = {
            "plan": self.plan.to_dict(),
            "backend": backend,
            "cache": cache,
            "template": self.input.template.text,
            "id_field": self.input.id_field,
            "output": output,
        }
        return _sha(json.dumps(data, sort_keys=True, default=str))[:16]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_TIMING_ONLY: Final = frozenset({"latency"})
"""Knobs that only delay an answer, never change it: not part of the fingerprint."""


def _knobs(settings: Any, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The fingerprint's view of a backend's settings: plain values, timing left out."""

    def plain(inst: Any, field: Any, value: Any) -> Any:
        return value.value if isinstance(value, enum.Enum) else value

    data = attrs.asdict(settings, value_serializer=plain)
    keep = set(names) if names is not None else set(data)
    return {k: v for k, v in data.items() if k in keep and k not in _TIMING_ONLY}


# -- overrides ---------------------------------------------------------------------------------

_SEGMENT: Final = re.compile(r'"(?P<quoted>[^"]*)"|(?P<bare>[^.\["]+)|\[(?P<index>\d+)\]')


def split_key(key: str) -> tuple[str | int, ...]:
    """``plan.stages[1].params.temperature`` -> ``("plan", "stages", 1, "params", "temperature")``.

    Quote a segment holding dots: ``prices."gemini-2.5-flash".input``.
    """
    out: list[str | int] = []
    pos = 0
    expect_dot = False
    while pos < len(key):
        if expect_dot and key[pos] == ".":
            pos += 1
            expect_dot = False
            continue
        match = _SEGMENT.match(key, pos)
        if match is None or (expect_dot and match.group("index") is None):
            raise PlanError(f"--set {key}", f"cannot read the key at character {pos + 1}")
        if match.group("index") is not None:
            if not out:
                raise PlanError(f"--set {key}", "a key cannot start with an index")
            out.append(int(match.group("index")))
        else:
            out.append(
                match.group("quoted") if match.group("quoted") is not None else match.group("bare")
            )
        pos = match.end()
        expect_dot = True
    if not out or not isinstance(out[0], str) or not out[0] or key.endswith("."):
        raise PlanError(f"--set {key}", "empty key")
    return tuple(out)


def parse_override(text: str) -> tuple[str, Any]:
    """Read ``key.path=value``; the value is a TOML value, else a plain string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise PlanError(f"--set {text}", "expected key.path=value")
    split_key(key)
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _apply_override(data: dict[str, Any], key: str, value: Any) -> None:
    path = split_key(key)
    node: Any = data
    for i, segment in enumerate(path[:-1]):
        following = path[i + 1]
        if isinstance(segment, int):
            if not isinstance(node, list) or segment >= len(node):
                raise PlanError(f"--set {key}", f"there is no element [{segment}] to set")
            node = node[segment]
            continue
        if not isinstance(node, dict):
            raise PlanError(f"--set {key}", f"{segment!r} is inside a value that is not a table")
        if segment not in node:
            node[segment] = [] if isinstance(following, int) else {}
        node = node[segment]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last > len(node):
            raise PlanError(f"--set {key}", f"there is no element [{last}] to set")
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise PlanError(f"--set {key}", "the key goes inside a value that is not a table")


# -- reading -----------------------------------------------------------------------------------


class _Reader:
    """Reads one section with errors prefixed by ``file: section.key``."""

    def __init__(self, file: str, overridden: Iterable[str]) -> None:
        self.file = file
        self.overridden = tuple(overridden)

    def error(self, path: str, problem: str) -> PlanError:
        note = ""
        for key in self.overridden:
            norm = key.replace('"', "")
            if (
                path == norm
                or path.startswith((norm + ".", norm + "["))
                or norm.startswith(path + ".")
            ):
                note = " (set on the command line)"
                break
        return PlanError(f"{self.file}: {path}", problem + note)

    def table(self, value: object, path: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected a table, got {_show(value)}")
        return dict(value)

    def keys(self, table: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
        for key in table:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                raise self.error(where, f"unknown key (allowed: {', '.join(allowed)})")

    def _plan_check(self, check: Callable[..., Any], value: object, path: str, **kw: Any) -> Any:
        """Run one of the plan's value checks, its error located in this file."""
        try:
            return check(value, path, **kw)
        except PlanError as exc:
            raise self.error(exc.path, exc.problem) from None

    def string(self, value: object, path: str) -> str:
        text: str = self._plan_check(_str, value, path)
        if not text.strip():
            raise self.error(path, "expected a non-empty string")
        return text

    def integer(self, value: object, path: str, *, minimum: int) -> int:
        number: int = self._plan_check(_int, value, path, minimum=minimum)
        return number

    def seconds(self, value: object, path: str) -> float:
        """A positive, finite number of seconds."""
        number: float = self._plan_check(_seconds, value, path)
        return number

    def number(
        self, value: object, path: str, *, minimum: float = 0.0, maximum: float | None = None
    ) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.error(path, f"expected a number, got {_show(value)}")
        if value < minimum:
            raise self.error(path, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(path, f"must be at most {maximum}, got {value}")
        return float(value)

    def boolean(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"expected true or false, got {_show(value)}")
        return value

    def choice(self, value: object, path: str, choices: Sequence[str]) -> str:
        text = self.string(value, path)
        if text not in choices:
            raise self.error(path, f"expected one of {', '.join(choices)}, got {text!r}")
        return text

    def member(self, value: object, path: str, kind: type[E]) -> E:
        """The member of the enum *kind* whose value is the string *value*."""
        return kind(self.choice(value, path, [m.value for m in kind]))


def load_pipeline(
    path: str | Path,
    *,
    overrides: Sequence[tuple[str, Any]] = (),
    cwd: Path | None = None,
) -> Pipeline:
    """Read, override and check a pipeline file.

    Relative paths in the file are relative to the file; relative paths given
    in *overrides* are relative to *cwd* (the current directory by default).
    """
    source = Path(path)
    if not source.exists():
        raise PlanError(str(source), "no such pipeline file")
    data = load_document(source)
    for key, value in overrides:
        _apply_override(data, key, value)
    cwd = (cwd or Path.cwd()).resolve()
    return _parse(data, source.resolve(), cwd, {k.replace('"', "") for k, _ in overrides})


def _parse(data: dict[str, Any], source: Path, cwd: Path, overridden: set[str]) -> Pipeline:
    r = _Reader(source.name, overridden)
    r.keys(data, SECTIONS, "")
    base = source.parent

    def resolve(value: object, key: str) -> Path:
        text = r.string(value, key)
        given = Path(text).expanduser()
        if given.is_absolute():
            return given
        return (cwd if key in overridden else base) / given

    name = source.stem
    if "name" in data:
        name = r.string(data["name"], "name")
        if not _NAME_OK.match(name):
            raise r.error("name", "expected letters, digits, '_', '-' or '.' (at most 64)")

    if "plan" not in data:
        raise r.error("plan", "missing: a pipeline needs a [plan] with at least one stage")
    try:
        plan = Plan.from_dict(r.table(data["plan"], "plan"), where="plan")
    except PlanError as exc:
        raise r.error(exc.path, exc.problem) from None

    backend = _backend(r, data.get("backend", {"kind": "emulator"}))
    cache = _cache(r, data["cache"], resolve) if "cache" in data else None
    if "input" not in data:
        raise r.error("input", "missing: a pipeline needs an [input] with a path and a template")
    input_ = _input(r, r.table(data["input"], "input"), resolve)
    output = _output(r, r.table(data.get("output", {}), "output"), resolve, base, input_)
    journal_table = r.table(data.get("journal", {}), "journal")
    r.keys(journal_table, ("path",), "journal")
    journal = JournalConfig(
        resolve(journal_table["path"], "journal.path")
        if "path" in journal_table
        else output.path.with_name(output.path.stem + ".journal.sqlite")
    )
    run = _run(r, r.table(data.get("run", {}), "run"), resolve)
    prices = _prices(r, r.table(data.get("prices", {}), "prices"))
    if journal.path.resolve() == output.path.resolve():
        raise r.error("journal.path", "must differ from output.path")
    if output.path.resolve() == input_.path.resolve():
        raise r.error("output.path", "must differ from input.path (the input would be overwritten)")
    return Pipeline(
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


_BACKEND_KEYS: Final = ("kind", "model", "api_version", "base_url", "emulator", "sim")
_EMULATOR_KEYS: Final = (
    "seed",
    "invalid_rate",
    "invalid_rate_slope",
    "latency",
    "min_cache_tokens",
    "expiry_style",
    "faults",
)
_FAULT_KEYS: Final = (
    "kind",
    "rate",
    "at",
    "times",
    "route",
    "retry_delay",
    "retry_after_header",
    "delay",
)
SIM_KNOBS: Final = tuple(
    f.name for f in attrs.fields(SimModel) if f.name not in ("fields", "instructions_tokens")
)
"""The ``[backend.sim]`` keys: every knob of ``SimModel`` but those each run derives."""
_KINDS: Final = tuple(k.value for k in BackendKind)


def _backend(r: _Reader, raw: object) -> BackendConfig:
    if isinstance(raw, str):
        raw = {"kind": raw}
    table = r.table(raw, "backend")
    r.keys(table, _BACKEND_KEYS, "backend")
    kind_name = table.get("kind", "emulator")
    if not isinstance(kind_name, str) or kind_name not in _KINDS:
        raise r.error(
            "backend.kind",
            f"unknown backend {kind_name!r} (expected one of {', '.join(_KINDS)})",
        )
    kind = BackendKind(kind_name)
    model = r.string(table.get("model", DEFAULT_MODEL), "backend.model")
    if model.startswith("models/"):
        model = model.removeprefix("models/")
    api_version = r.choice(
        table.get("api_version", "v1beta"), "backend.api_version", ("v1", "v1beta", "v1alpha")
    )
    base_url = None
    if "base_url" in table:
        base_url = r.string(table["base_url"], "backend.base_url")
        if not base_url.startswith(("http://", "https://")):
            raise r.error("backend.base_url", f"expected an http(s) URL, got {base_url!r}")
        if kind is not BackendKind.GEMINI:
            raise r.error("backend.base_url", "only the gemini backend talks to a URL")
    for section, wanted in (("emulator", BackendKind.EMULATOR), ("sim", BackendKind.SIM)):
        if section in table and kind is not wanted:
            raise r.error(
                f"backend.{section}",
                f"settings for the {section} backend, but kind is {kind.value!r}",
            )
    emulator = EmulatorSettings()
    if "emulator" in table:
        emulator = _emulator(r, r.table(table["emulator"], "backend.emulator"))
    sim = SimModel()
    if "sim" in table:
        sim = _sim(r, r.table(table["sim"], "backend.sim"))
    return BackendConfig(kind, model, api_version, base_url, emulator, sim)


def _rate(r: _Reader, value: object, path: str) -> float:
    return r.number(value, path, minimum=0.0, maximum=1.0)


def _emulator_package(r: _Reader, path: str) -> ModuleType:
    """``strategies.gemini.emulator``, imported only for a pipeline that configures it."""
    try:
        from strategies.gemini import emulator
    except ImportError as exc:
        raise r.error(
            path, f"the emulator is not installed ({exc}): pip install 'stagedretry[cli]'"
        ) from None
    return emulator


def _emulator(r: _Reader, table: dict[str, Any]) -> EmulatorSettings:
    where = "backend.emulator"
    r.keys(table, _EMULATOR_KEYS, where)
    default = EmulatorSettings()
    faults = []
    raw_faults = table.get("faults", [])
    if not isinstance(raw_faults, list):
        raise r.error(f"{where}.faults", f"expected a list of tables, got {_show(raw_faults)}")
    expiry_style = None
    if "expiry_style" in table:
        package = _emulator_package(r, f"{where}.expiry_style")
        expiry_style = r.member(table["expiry_style"], f"{where}.expiry_style", package.ExpiryStyle)
    for i, raw in enumerate(raw_faults):
        here = f"{where}.faults[{i}]"
        fault = r.table(raw, here)
        r.keys(fault, _FAULT_KEYS, here)
        kinds = _emulator_package(r, f"{here}.kind").FaultKind
        if "kind" not in fault:
            raise r.error(f"{here}.kind", f"missing (one of {', '.join(k.value for k in kinds)})")
        kind = r.member(fault["kind"], f"{here}.kind", kinds)
        at = None
        if "at" in fault:
            raw_at = fault["at"]
            if isinstance(raw_at, int) and not isinstance(raw_at, bool):
                raw_at = [raw_at]
            if not isinstance(raw_at, list):
                raise r.error(
                    f"{here}.at", f"expected a list of request numbers, got {_show(raw_at)}"
                )
            at = tuple(r.integer(v, f"{here}.at[{j}]", minimum=1) for j, v in enumerate(raw_at))
        faults.append(
            FaultSpec(
                kind=kind,
                rate=_rate(r, fault["rate"], f"{here}.rate") if "rate" in fault else None,
                at=at,
                times=r.integer(fault["times"], f"{here}.times", minimum=1)
                if "times" in fault
                else None,
                route=r.choice(
                    fault.get("route", "generateContent"),
                    f"{here}.route",
                    ("generateContent", "cachedContents", "*"),
                ),
                retry_delay=(
                    r.number(fault["retry_delay"], f"{here}.retry_delay")
                    if "retry_delay" in fault
                    else 2.0
                ),
                retry_after_header=r.boolean(
                    fault.get("retry_after_header", False), f"{here}.retry_after_header"
                ),
                delay=r.number(fault.get("delay", 1.0), f"{here}.delay"),
            )
        )
    return EmulatorSettings(
        seed=r.integer(table.get("seed", default.seed), f"{where}.seed", minimum=0),
        invalid_rate=_rate(
            r, table.get("invalid_rate", default.invalid_rate), f"{where}.invalid_rate"
        ),
        invalid_rate_slope=r.number(
            table.get("invalid_rate_slope", default.invalid_rate_slope),
            f"{where}.invalid_rate_slope",
        ),
        latency=r.number(table.get("latency", default.latency), f"{where}.latency"),
        min_cache_tokens=r.integer(
            table.get("min_cache_tokens", default.min_cache_tokens),
            f"{where}.min_cache_tokens",
            minimum=0,
        ),
        expiry_style=expiry_style,
        faults=tuple(faults),
    )


def _sim(r: _Reader, table: dict[str, Any]) -> SimModel:
    """The ``[backend.sim]`` table read straight into ``SimModel``, by its fields' types.

    Integers (the seed) are whole numbers of at least 0; floats are numbers of
    at least 0, and a ``*_rate`` is a probability, at most 1.
    """
    where = "backend.sim"
    r.keys(table, SIM_KNOBS, where)
    types = {f.name: str(getattr(f.type, "__name__", f.type)) for f in attrs.fields(SimModel)}
    knobs: dict[str, Any] = {}
    for name, value in table.items():
        path = f"{where}.{name}"
        kind = types[name]
        if kind == "bool":
            knobs[name] = r.boolean(value, path)
        elif kind == "int":
            knobs[name] = r.integer(value, path, minimum=0)
        elif kind == "str":
            knobs[name] = r.string(value, path)
        elif name.endswith("_rate"):
            knobs[name] = _rate(r, value, path)
        else:
            knobs[name] = r.number(value, path)
    return SimModel(**knobs)


_CACHE_KEYS: Final = ("system_instruction", "enabled", "ttl", "renew_margin", "on_close", "tag")


def _cache(r: _Reader, raw: object, resolve: Any) -> CacheConfig:
    table = r.table(raw, "cache")
    r.keys(table, _CACHE_KEYS, "cache")
    if "system_instruction" not in table:
        raise r.error(
            "cache.system_instruction", "missing: the path of a file holding the shared instruction"
        )
    path: Path = resolve(table["system_instruction"], "cache.system_instruction")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise r.error(
            "cache.system_instruction", f"cannot read {str(path)!r}: {_why(exc)}"
        ) from None
    if not text.strip():
        raise r.error("cache.system_instruction", f"{str(path)!r} is empty")
    ttl = r.seconds(table.get("ttl", 3600.0), "cache.ttl")
    margin = r.number(table.get("renew_margin", 300.0), "cache.renew_margin")
    if margin >= ttl:
        raise r.error(
            "cache.renew_margin", f"must be smaller than cache.ttl ({ttl:g} s), got {margin:g}"
        )
    tag = None
    if "tag" in table:
        tag = r.string(table["tag"], "cache.tag")
        if len(tag) > 40:
            raise r.error("cache.tag", f"at most 40 characters, got {len(tag)}")
        if any(c in tag for c in ":\r\n"):
            # The tag becomes part of the cache's display name, which ':' separates.
            raise r.error("cache.tag", f"must not hold ':' or a line break, got {tag!r}")
    return CacheConfig(
        system_instruction=text,
        instruction_path=path,
        enabled=r.boolean(table.get("enabled", True), "cache.enabled"),
        ttl=ttl,
        renew_margin=margin,
        on_close=r.member(table.get("on_close", "keep"), "cache.on_close", CacheClose),
        tag=tag,
    )


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(exc)


_INPUT_KEYS: Final = ("path", "id_field", "template", "template_file")


def _input(r: _Reader, table: dict[str, Any], resolve: Any) -> InputConfig:
    r.keys(table, _INPUT_KEYS, "input")
    if "path" not in table:
        raise r.error("input.path", "missing: the JSONL file of records")
    path: Path = resolve(table["path"], "input.path")
    if not path.is_file():
        raise r.error("input.path", f"{str(path)!r} is not a readable file")
    id_field = r.string(table.get("id_field", "id"), "input.id_field")
    if "template" in table and "template_file" in table:
        raise r.error("input.template_file", "give either input.template or input.template_file")
    if "template" in table:
        text = r.string(table["template"], "input.template")
        where = "input.template"
    elif "template_file" in table:
        template_path: Path = resolve(table["template_file"], "input.template_file")
        try:
            text = template_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise r.error(
                "input.template_file", f"cannot read {str(template_path)!r}: {_why(exc)}"
            ) from None
        where = "input.template_file"
    else:
        raise r.error("input.template", "missing: the prompt, with {field} placeholders")
    try:
        template = Template.parse(text, where)
    except PlanError as exc:
        raise r.error(exc.path, exc.problem) from None
    return InputConfig(path=path, template=template, id_field=id_field)


_OUTPUT_KEYS: Final = ("path", "model", "schema")


def _output(
    r: _Reader, table: dict[str, Any], resolve: Any, base: Path, input_: InputConfig
) -> OutputConfig:
    r.keys(table, _OUTPUT_KEYS, "output")
    if "path" in table:
        path: Path = resolve(table["path"], "output.path")
    else:
        path = input_.path.with_name(input_.path.stem + ".out.jsonl")
    if "model" in table and "schema" in table:
        raise r.error("output.schema", "give either output.model or output.schema, not both")
    if "model" in table:
        spec = r.string(table["model"], "output.model")
        model_class = _import_model(r, spec, base)
        try:
            shape = model_class.model_json_schema()
        except Exception as exc:
            raise r.error(
                "output.model", f"{spec!r} has no JSON schema: {type(exc).__name__}: {exc}"
            ) from None
        return OutputConfig(
            path, model=spec, model_class=model_class, digest=_sha(_canonical(shape))
        )
    if "schema" in table:
        schema_path: Path = resolve(table["schema"], "output.schema")
        try:
            schema = json.loads(schema_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise r.error(
                "output.schema", f"cannot read {str(schema_path)!r}: {_why(exc)}"
            ) from None
        except ValueError as exc:
            raise r.error("output.schema", f"{schema_path.name} is not valid JSON: {exc}") from None
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise r.error(
                "output.schema", f'{schema_path.name} must be a JSON Schema with "type": "object"'
            )
        from ._schema import check_schema

        problem = check_schema(schema)
        if problem is not None:
            raise r.error("output.schema", f"{schema_path.name}: {problem}")
        return OutputConfig(
            path,
            schema_path=schema_path,
            schema=MappingProxyType(schema),
            digest=_sha(_canonical(schema)),
        )
    return OutputConfig(path)


def _canonical(data: object) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def _import_model(r: _Reader, spec: str, base: Path) -> type[Any]:
    module_name, sep, qualname = spec.partition(":")
    if not sep or not module_name or not qualname:
        raise r.error("output.model", f"expected 'module:Class', got {spec!r}")
    try:
        module = _import_beside(module_name, base) or importlib.import_module(module_name)
    except ImportError as exc:
        raise r.error("output.model", f"cannot import module {module_name!r} ({exc})") from None
    except Exception as exc:
        raise r.error(
            "output.model", f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    target: Any = module
    for part in qualname.split("."):
        if not hasattr(target, part):
            raise r.error("output.model", f"module {module_name!r} has no {qualname!r}")
        target = getattr(target, part)
    try:
        from pydantic import BaseModel
    except ImportError:
        raise r.error(
            "output.model", "a model needs pydantic: pip install 'stagedretry[pydantic]'"
        ) from None
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise r.error("output.model", f"{spec!r} is not a pydantic model class")
    return target


def _import_beside(module_name: str, base: Path) -> ModuleType | None:
    """Import *module_name* from the pipeline's folder, or ``None`` if it is not there.

    The module (or package) is found with the import system's own finder,
    searching *base* alone, so ``sys.path`` is never touched.  It is loaded
    afresh under a private name tied to its folder, so an edited model is read
    again, and two pipelines with a ``model.py`` each never share one.
    """
    top, _, rest = module_name.partition(".")
    spec = importlib.machinery.PathFinder.find_spec(top, [str(base)])
    if spec is None:
        return None
    alias = f"_stagedretry_model_{_sha(str(base.resolve()))[:12]}_{top}"
    for name in [n for n in sys.modules if n == alias or n.startswith(alias + ".")]:
        del sys.modules[name]  # an earlier load of the same folder: read the files again
    folders = list(spec.submodule_search_locations or ())
    fresh: importlib.machinery.ModuleSpec | None
    if spec.origin is None:  # a folder without __init__.py: a namespace package
        fresh = importlib.machinery.ModuleSpec(alias, None, is_package=True)
        fresh.submodule_search_locations = folders
    else:
        fresh = importlib.util.spec_from_file_location(
            alias, spec.origin, submodule_search_locations=folders or None
        )
    assert fresh is not None
    module = importlib.util.module_from_spec(fresh)
    # Registered while it runs, as an import would: pydantic and dataclasses look it up.
    sys.modules[alias] = module
    try:
        if fresh.loader is not None:
            fresh.loader.exec_module(module)
    except BaseException:
        del sys.modules[alias]
        raise
    if not rest:
        return module
    return importlib.import_module(f"{alias}.{rest}")


_RUN_KEYS: Final = ("concurrency", "deadline", "seed", "request_log")


def _run(r: _Reader, table: dict[str, Any], resolve: Any) -> RunConfig:
    r.keys(table, _RUN_KEYS, "run")
    return RunConfig(
        concurrency=r.integer(table.get("concurrency", 16), "run.concurrency", minimum=1),
        deadline=(r.seconds(table["deadline"], "run.deadline") if "deadline" in table else None),
        seed=r.integer(table["seed"], "run.seed", minimum=0) if "seed" in table else None,
        request_log=resolve(table["request_log"], "run.request_log")
        if "request_log" in table
        else None,
    )


_PRICE_KEYS: Final = ("input", "cached_input", "output", "cache_storage")


def _prices(r: _Reader, table: dict[str, Any]) -> dict[str, Price]:
    out = {}
    for model, raw in table.items():
        here = f'prices."{model}"' if "." in model else f"prices.{model}"
        entry = r.table(raw, here)
        r.keys(entry, _PRICE_KEYS, here)
        for key in ("input", "cached_input", "output"):
            if key not in entry:
                raise r.error(f"{here}.{key}", "missing: a price per million tokens")
        out[model] = Price(
            input=r.number(entry["input"], f"{here}.input"),
            cached_input=r.number(entry["cached_input"], f"{here}.cached_input"),
            output=r.number(entry["output"], f"{here}.output"),
            cache_storage=r.number(entry.get("cache_storage", 0.0), f"{here}.cache_storage"),
        )
    return out
