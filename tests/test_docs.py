"""Every code block of the documentation runs, and the generated diagrams are current.

The pages are docs/**/*.md and README.md.  Within a page, in order:

- ``python`` blocks run in one namespace (a fresh module per page), in a temporary
  working directory; a block with top-level ``await`` runs on the page's event loop.
- A block titled ``output`` must match what the Python block before it printed
  (``...`` matches anything, as in doctest).
- A block of any language titled with a file name (```toml title="plan.toml"```) is
  written to that file, so later blocks can use it; a Python file named ``test_*.py``
  is then run with pytest.
- A ``console`` block is a shell session: each ``$ command`` runs in the page's
  directory with this environment's ``stagedretry`` on the ``PATH``; its output must
  match the lines below it (none: not checked), and it must exit 0 unless those lines
  end with ``[exit N]``.
- A block preceded by ``<!-- skip: reason -->`` is not run; there must be few.

README.md's example uses names it does not define (``client``, ``RULES``, ``Book``,
``items``): a prelude here defines them against the emulator, so the README is held to
the real API too.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import doctest
import inspect
import io
import os
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import stagedretry as sr

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# The SDK's aiohttp transport subclasses aiohttp.ClientSession, which aiohttp deprecates
# with a warning on every new session: the SDK's doing, tolerated as in tests/gemini.
AIOHTTP_SUBCLASS_WARNING = (
    "ignore:Inheritance class AiohttpClientSession from ClientSession is discouraged"
    ":DeprecationWarning"
)

MAX_SKIPPED = 4
"""Blocks that cannot run here (a real API key, a shell session): keep them rare."""

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>.*)$")
_TITLE = re.compile(r'title="(?P<title>[^"]*)"')
_SKIP = re.compile(r"^\s*<!-- skip: (?P<reason>.+?) -->\s*$")
_SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"$')


@attrs.frozen
class Block:
    """One fenced block of a page."""

    page: str
    line: int
    lang: str
    title: str | None
    code: str
    skip: str | None

    @property
    def file_name(self) -> str | None:
        """The file this block is written to, when its title names one."""
        if self.title and re.fullmatch(r"[\w.-]+\.\w+", self.title):
            return self.title
        return None


def fenced_blocks(text: str, page: str) -> list[Block]:
    """Every fenced block of a Markdown text, with its language, title and skip marker."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opened = _FENCE_OPEN.match(lines[i])
        if opened is None:
            i += 1
            continue
        indent, fence, info = opened["indent"], opened["fence"], opened["info"].strip()
        lang = info.split(maxsplit=1)[0] if info and not info.startswith(("{", "title")) else ""
        title = m["title"] if (m := _TITLE.search(info)) else None
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = m["reason"] if (m := _SKIP.match(previous)) else None
        body: list[str] = []
        j = i + 1
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        while j < len(lines) and not closing.match(lines[j]):
            line = lines[j]
            line = line[len(indent) :] if line.startswith(indent) else line.lstrip()
            included = _SNIPPET.match(line)
            if included:  # pymdownx.snippets: the page shows that file's text
                line = (ROOT / included["path"]).read_text(encoding="utf-8").rstrip("\n")
            body.append(line)
            j += 1
        if j == len(lines):
            raise ValueError(f"{page}:{i + 1}: a fence is never closed")
        blocks.append(Block(page, i + 1, lang, title, "\n".join(body) + "\n", skip))
        i = j + 1
    return blocks


def console_session(text: str) -> list[tuple[int, str, list[str]]]:
    """Each ``(line offset, command, expected output lines)`` of a console block."""
    session: list[tuple[int, str, list[str]]] = []
    for offset, line in enumerate(text.splitlines()):
        if line.startswith("$ "):
            session.append((offset, line[2:], []))
        elif session:
            session[-1][2].append(line)
        elif line.strip():
            raise ValueError(f"a console block must start with a '$ ' command, not {line!r}")
    return [(o, c, _trim(lines)) for o, c, lines in session]


def _trim(lines: list[str]) -> list[str]:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def pages() -> list[Path]:
    """The pages whose code is run: every docs page and the README."""
    return [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _blocks(page: Path) -> list[Block]:
    return fenced_blocks(page.read_text(encoding="utf-8"), _name(page))


def _runnable(page: Path) -> bool:
    return any(b.lang in ("python", "console") or b.file_name for b in _blocks(page))


README_PRELUDE = '''
import pydantic
from strategies.gemini.emulator import GeminiEmulator, make_client

emulator = GeminiEmulator(seed=3, min_cache_tokens=64)
emulator.start()
client = make_client(emulator.base_url)
RULES = "Answer with the book's metadata as JSON. " * 40

class Book(pydantic.BaseModel):
    title: str
    author: str
    year: int

items = [sr.WorkItem(f"book-{i}", f"Book {i}: the metadata.") for i in range(20)]
'''
"""Defines what README.md's example leaves to the reader, against the emulator."""


class PageRun:
    """Runs one page's blocks in order in one module namespace and one event loop."""

    def __init__(self, page: Path, workdir: Path) -> None:
        self.page = page
        self.workdir = workdir
        self.module = types.ModuleType("docs_page_" + re.sub(r"\W", "_", _name(page)))
        self.module.__dict__["sr"] = sr
        self.tests: list[Path] = []
        self.printed: str | None = None

    def run(self, blocks: list[Block], prelude: str | None = None) -> None:
        sys.modules[self.module.__name__] = self.module
        runner = asyncio.Runner()
        try:
            if prelude is not None:
                self._execute(prelude, f"<prelude of {_name(self.page)}>", runner)
            for block in blocks:
                if block.skip is not None:
                    continue
                if block.file_name is not None:
                    path = self.workdir / block.file_name
                    path.write_text(block.code, encoding="utf-8")
                    if block.lang == "python" and block.file_name.startswith("test_"):
                        self.tests.append(path)
                    continue
                if block.lang == "python":
                    self._execute(block.code, f"{block.page}:{block.line}", runner)
                elif block.title == "output":
                    self._compare(block)
                elif block.lang == "console":
                    self._shell(block)
        finally:
            self._close(runner)
            sys.modules.pop(self.module.__name__, None)

    def _execute(self, source: str, filename: str, runner: asyncio.Runner) -> None:
        code = compile(source, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            if code.co_flags & inspect.CO_COROUTINE:
                runner.run(eval(code, self.module.__dict__))  # a block with top-level await
            else:
                exec(code, self.module.__dict__)
        self.printed = out.getvalue()

    def _compare(self, block: Block) -> None:
        where = f"{block.page}:{block.line}"
        assert self.printed is not None, f"{where}: an output block with no Python block before it"
        checker = doctest.OutputChecker()
        flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        assert checker.check_output(block.code, self.printed, flags), (
            f"{where}: the page shows\n{block.code}\nbut the code printed\n{self.printed}"
        )
        self.printed = None

    def _shell(self, block: Block) -> None:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.update(COLUMNS="100", NO_COLOR="1", TERM="dumb", PYTHONPATH=str(ROOT))
        for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY"):
            env.pop(name, None)
        for offset, command, expected in console_session(block.code):
            where = f"{block.page}:{block.line + 1 + offset}"
            done = subprocess.run(
                command,
                shell=True,
                cwd=self.workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            printed = done.stdout + done.stderr
            status, lines = 0, expected
            if lines and (m := re.fullmatch(r"\[exit (\d+)\]", lines[-1].strip())):
                status, lines = int(m[1]), lines[:-1]
            assert done.returncode == status, (
                f"{where}: `{command}` exited {done.returncode}, not {status}:\n{printed}"
            )
            if lines:
                want = "\n".join(lines) + "\n"
                flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
                assert doctest.OutputChecker().check_output(want, printed, flags), (
                    f"{where}: `{command}` should print\n{want}\nbut printed\n{printed}"
                )

    def _close(self, runner: asyncio.Runner) -> None:
        # A page that forgot to stop its emulator or close its client must not leak it.
        namespace = self.module.__dict__
        for value in list(namespace.values()):
            aio = getattr(getattr(value, "aio", None), "aclose", None)
            if aio is not None and type(value).__module__.startswith("google.genai"):
                runner.run(aio())
                value.close()
        runner.close()
        for value in list(namespace.values()):
            if type(value).__name__ == "GeminiEmulator":
                value.stop()


@pytest.mark.filterwarnings(AIOHTTP_SUBCLASS_WARNING)
@pytest.mark.parametrize("page", [p for p in pages() if _runnable(p)], ids=_name)
def test_page_code_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    run = PageRun(page, tmp_path)
    prelude = README_PRELUDE if page.name == "README.md" else None
    run.run(_blocks(page), prelude)
    for test_file in run.tests:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file.name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def _all_blocks() -> Iterator[Block]:
    for page in pages():
        yield from _blocks(page)


def test_few_blocks_are_skipped() -> None:
    skipped = [f"{b.page}:{b.line} ({b.skip})" for b in _all_blocks() if b.skip is not None]
    assert len(skipped) <= MAX_SKIPPED, skipped


def test_python_blocks_are_not_silently_ignored() -> None:
    # A typo in the info string (```pyhton, ```py) would take a block out of the run.
    odd = [
        f"{b.page}:{b.line} ({b.lang})"
        for b in _all_blocks()
        if b.lang in ("py", "python3", "pycon", "pyhton", "Python")
    ]
    assert odd == []


def test_the_home_page_and_tutorial_have_code_that_runs() -> None:
    for name in ("index.md", "tutorial.md"):
        assert any(b.lang == "python" and b.skip is None for b in _blocks(DOCS / name)), name


def _load_diagrams() -> Any:
    sys.path.insert(0, str(DOCS))
    try:
        import diagrams
    finally:
        sys.path.remove(str(DOCS))
    return diagrams


def test_diagrams_are_generated_from_the_code() -> None:
    diagrams = _load_diagrams()
    found = {}
    for page in DOCS.rglob("*.md"):
        for name, body in diagrams.marked_diagrams(page.read_text(encoding="utf-8")):
            found[f"{_name(page)}:{name}"] = body
            assert body == diagrams.DIAGRAMS[name](), (
                f"{_name(page)}: diagram {name!r} is stale; run python docs/diagrams.py"
            )
    assert "docs/explanation/state-machine.md:ladder" in found


def test_the_ladder_diagram_is_to_mermaid_verbatim() -> None:
    text = (DOCS / "explanation" / "state-machine.md").read_text(encoding="utf-8")
    assert "<!-- diagram: ladder -->\n```mermaid\n" + sr.Plan.ladder().to_mermaid() + "```" in text


def test_every_page_is_in_the_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r":\s*([\w/.-]+\.md)\s*$", config, re.MULTILINE))
    present = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert present == listed


def test_fenced_blocks_parser() -> None:
    text = (
        "intro\n"
        "<!-- skip: needs a key -->\n"
        '```python title="not run"\n'
        "x = 1\n"
        "```\n"
        '!!! note\n    ```toml title="plan.toml"\n    max_prompts = 3\n    ```\n'
        "````markdown\n```python\nnested = True\n```\n````\n"
    )
    blocks = fenced_blocks(text, "page.md")
    assert [(b.lang, b.title, b.skip, b.line) for b in blocks] == [
        ("python", "not run", "needs a key", 3),
        ("toml", "plan.toml", None, 7),
        ("markdown", None, None, 10),
    ]
    assert blocks[1].code == "max_prompts = 3\n"
    assert blocks[1].file_name == "plan.toml"
    assert blocks[0].file_name is None
    assert "nested = True" in blocks[2].code
