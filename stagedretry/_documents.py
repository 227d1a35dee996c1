"""Reading a TOML or YAML file (a pipeline or a bare plan) into plain data, held to limits.

Every failure is one :class:`PlanError` naming the file: not readable, larger
than :data:`MAX_DOCUMENT_BYTES`, not UTF-8, not valid TOML or YAML, nested
deeper than :data:`~stagedretry._limits.MAX_DEPTH`, or (YAML) a key given twice
in one mapping, which TOML refuses too.  A UTF-8 byte order mark is skipped.

PyYAML composes nodes recursively, so the depth is refused while composing,
before Python's recursion limit; the composed node graph is then walked with a
stack for what aliases can build (a node holding itself, exponential repeats).
"""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from ._describe import describe
from ._fs import os_reason
from ._limits import MAX_DEPTH, TooDeep, check_depth
from ._outcomes import PlanError

MAX_DOCUMENT_BYTES: Final = 1024 * 1024
"""The largest pipeline or plan file read, in bytes (1 MiB; a real one is a few KB)."""
_MAX_NODES: Final = 100_000
"""The most YAML nodes visited, aliases followed: a document that repeats more is a bomb."""
_UTF8_BOM: Final = b"\xef\xbb\xbf"


def read_limited(path: Path, limit: int) -> bytes:
    """The bytes of *path*, or ``limit + 1`` of them when it holds more (never the whole of a
    huge file).  Raises ``OSError``."""
    # Opened without waiting (a FIFO with no writer would block for ever), then held to a
    # regular file: a FIFO or a device has no end to read up to.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return file.read(limit + 1)


def load_document(path: Path) -> dict[str, Any]:
    """Parse a TOML or YAML file into plain data, with errors that name the file.

    Raises :class:`PlanError` (``"<file name>: <problem>"`` or, for a key given
    twice in YAML, ``"<file name>: <dotted path>: duplicate key ..."``).
    """
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise PlanError(path.name, f"unknown file type {suffix!r} (expected .toml, .yaml or .yml)")
    try:
        raw = read_limited(path, MAX_DOCUMENT_BYTES)
    except OSError as exc:
        raise PlanError(str(path), f"cannot read the file ({os_reason(exc)})") from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise PlanError(
            path.name, f"the file is larger than the limit of {MAX_DOCUMENT_BYTES} bytes"
        )
    if suffix == ".toml":
        return _toml(raw, path.name)
    return _yaml(raw, path.name)


def _toml(raw: bytes, name: str) -> dict[str, Any]:
    try:
        text = raw.removeprefix(_UTF8_BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(name, f"not UTF-8 text (byte {exc.start + 1})") from None
    try:
        data = tomllib.loads(text)
        check_depth(data)
    except TooDeep as exc:
        raise PlanError(name, f"the document is {exc}") from None
    except RecursionError:
        # tomllib reads arrays and inline tables recursively.
        raise PlanError(name, f"the document is {TooDeep()}") from None
    except ValueError as exc:  # TOMLDecodeError, or an integer too long to convert
        raise PlanError(name, f"not valid TOML: {exc}") from None
    return data


def _yaml(raw: bytes, name: str) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:
        raise PlanError(name, "YAML needs PyYAML: pip install 'stagedretry[yaml]'") from None
    loader = None
    try:
        loader = _yaml_loader()(raw)  # reads the start of the stream: may raise a ReaderError
        node = loader.get_single_node()
        if node is None:
            return {}
        _check_nodes(node, name)
        data = loader.construct_document(node)
    except _TooDeepYaml as exc:
        raise PlanError(name, f"the document is {TooDeep()} (line {exc.line})") from None
    except yaml.MarkedYAMLError as exc:
        raise PlanError(name, f"not valid YAML: {_yaml_problem(exc)}") from None
    except yaml.YAMLError as exc:  # a reader error: bytes that are no text
        raise PlanError(name, f"not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        return {}
    return expect_table(data, name)


def expect_table(value: object, where: str) -> dict[str, Any]:
    """*value* as a dict with string keys; else :class:`PlanError` at *where*."""
    if not isinstance(value, Mapping):
        raise PlanError(where, f"expected a table, got {describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise PlanError(where, f"keys must be strings, got {key!r}")
    return dict(value)


def _yaml_problem(exc: Any) -> str:
    """One sentence from PyYAML's marked error: what, at which line and column."""
    mark = exc.problem_mark or exc.context_mark
    what = " ".join(str(exc.problem or exc.context or "unreadable").split())
    if mark is None:
        return what
    return f"{what} (line {mark.line + 1}, column {mark.column + 1})"


class _TooDeepYaml(Exception):
    """Raised by the composer at the depth limit, with the 1-based line it reached."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


@functools.cache
def _yaml_loader() -> Any:
    """PyYAML's safe loader with YAML 1.2 booleans, a depth limit and one-sentence errors.

    YAML 1.1 reads ``on``, ``off``, ``yes`` and ``no`` as booleans, which would
    turn a stage's ``on:`` table into the key ``True``; only ``true``/``false``
    are booleans here.
    """
    import yaml
    from yaml.constructor import ConstructorError

    class Loader(yaml.SafeLoader):
        _depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            # One level of YAML is a few Python frames: stop long before the recursion limit.
            # A scalar sits one level below the deepest collection.
            if self._depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise _TooDeepYaml(event.start_mark.line + 1)
            self._depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep)
            except (ValueError, OverflowError) as exc:
                # A date that is no date, an integer too long to convert: PyYAML lets these out.
                raise ConstructorError(None, None, str(exc), node.start_mark) from None

    bool_tag = "tag:yaml.org,2002:bool"
    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != bool_tag]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return Loader


_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


def _check_nodes(root: Any, name: str) -> None:
    """Walk the composed YAML with a stack: depth (aliases followed), size and duplicate keys."""
    import yaml

    visited = 0
    stack: list[tuple[Any, str, int]] = [(root, "", 0)]
    while stack:
        node, where, depth = stack.pop()
        if isinstance(node, yaml.ScalarNode):
            continue
        depth += 1
        if depth > MAX_DEPTH:
            # Only aliases get here (the composer stops plain nesting): name the line, as the
            # path of a node holding itself goes on for ever.
            line = node.start_mark.line + 1
            raise PlanError(name, f"the document is {TooDeep()}, aliases followed (line {line})")
        visited += 1
        if visited > _MAX_NODES:
            raise PlanError(
                name, f"the document is too large: more than {_MAX_NODES} nodes, aliases followed"
            )
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, f"{where}[{i}]", depth) for i, child in enumerate(node.value))
            continue
        _refuse_duplicates(node, name, where)
        for key, value in node.value:
            label = key.value if isinstance(key, yaml.ScalarNode) else "?"
            stack.append((key, where, depth))
            stack.append((value, f"{where}.{label}" if where else str(label), depth))


def _refuse_duplicates(node: Any, name: str, where: str) -> None:
    import yaml

    first: dict[tuple[str, str], int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
            continue  # merge keys (<<) may repeat, and their keys may be overridden
        line = key.start_mark.line + 1
        seen = first.get((key.tag, key.value))
        if seen is not None:
            raise PlanError(
                _at(name, where),
                f"duplicate key {key.value!r} (line {line}, first given on line {seen})",
            )
        first[key.tag, key.value] = line


def _at(name: str, where: str) -> str:
    return f"{name}: {where}" if where else name
