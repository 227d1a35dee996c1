"""Every code block of the documentation runs, and the generated diagrams are current.

The pages are docs/**/*.md and README.md.  Within a page, in order:

- ``python`` blocks run in one namespace (a fresh module per page), in a temporary
  working directory; a block with top-level ``await`` runs on the page's event loop.
- A block titled ``output`` must match what the Python block before it printed
  (``...`` matches anything, as in doctest).
- A block of any language titled with a file name (```toml title="plan.toml"```) is
  written to that file, so later blocks (and commands) can use it.
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
import importlib
import importlib.util
import inspect
import io
import json
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
BIN = str(Path(sys.executable).parent)

# The SDK's aiohttp transport subclasses aiohttp.ClientSession, which aiohttp deprecates
# with a warning on every new session: the SDK's doing, tolerated as in tests/gemini.
AIOHTTP_SUBCLASS_WARNING = (
    "ignore:Inheritance class AiohttpClientSession from ClientSession is discouraged"
    ":DeprecationWarning"
)

MAX_SKIPPED = 3
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


README_PRELUDE = """
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
"""
"""Defines what README.md's example leaves to the reader, against the emulator."""


class PageRun:
    """Runs one page's blocks in order in one module namespace and one event loop."""

    def __init__(self, page: Path, workdir: Path) -> None:
        self.page = page
        self.workdir = workdir
        self.module = types.ModuleType("docs_page_" + re.sub(r"\W", "_", _name(page)))
        self.module.__dict__["sr"] = sr
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
        env["PATH"] = os.pathsep.join([BIN, env.get("PATH", "")])
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


def _warm_hypothesis() -> None:
    """Let hypothesis build its caches (Unicode tables, the code's constants) once, up front.

    In a fresh checkout that takes seconds, and would land in the first example of a page's
    property, where hypothesis' own too_slow health check would blame the page.
    """
    from hypothesis import HealthCheck, given, settings

    from stagedretry.testing import plans

    @settings(max_examples=3, database=None, suppress_health_check=list(HealthCheck))
    @given(plans())
    def warm(plan: sr.Plan) -> None:
        assert plan.stages

    warm()


@pytest.mark.filterwarnings(AIOHTTP_SUBCLASS_WARNING)
@pytest.mark.parametrize("page", [p for p in pages() if _runnable(p)], ids=_name)
def test_page_code_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if "hypothesis" in page.read_text(encoding="utf-8"):
        _warm_hypothesis()
    monkeypatch.chdir(tmp_path)
    # Hypothesis keeps costly caches (the Unicode tables, the constants of the code under
    # test) in ./.hypothesis; commands run here share the suite's instead of rebuilding them.
    (ROOT / ".hypothesis").mkdir(exist_ok=True)
    (tmp_path / ".hypothesis").symlink_to(ROOT / ".hypothesis", target_is_directory=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    # Commands the pages run (``stagedretry``, ``python``) are this environment's.
    monkeypatch.setenv("PATH", os.pathsep.join([BIN, os.environ.get("PATH", "")]))
    run = PageRun(page, tmp_path)
    prelude = README_PRELUDE if page.name == "README.md" else None
    run.run(_blocks(page), prelude)


def _all_blocks() -> Iterator[Block]:
    for page in pages():
        yield from _blocks(page)


def test_few_blocks_are_skipped_and_those_compile() -> None:
    skipped = [b for b in _all_blocks() if b.skip is not None]
    assert len(skipped) <= MAX_SKIPPED, [f"{b.page}:{b.line} ({b.skip})" for b in skipped]
    for block in skipped:
        if block.lang == "python":
            where = f"{block.page}:{block.line}"
            compile(block.code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


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


def _load(path: Path) -> Any:
    """Import a script that is not in a package (docs/diagrams.py, docs/hooks.py, ...)."""
    name = "docs_script_" + path.stem
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_diagrams_are_generated_from_the_code() -> None:
    diagrams = _load(DOCS / "diagrams.py")
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


PUBLIC_MODULES = (
    "stagedretry",
    "stagedretry.validators",
    "stagedretry.testing",
    "strategies.callable",
    "strategies.sim",
    "strategies.gemini",
    "strategies.gemini.emulator",
)


def test_the_reference_covers_every_public_name() -> None:
    # A page either renders a whole module (``::: module``), which lists its __all__,
    # or names each member (``::: module.Name``); a new public name must land on one.
    rendered = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "reference").glob("*.md"))
    directives = set(re.findall(r"^::: ([\w.]+)\s*$", rendered, re.MULTILINE))
    missing = []
    for name in PUBLIC_MODULES:
        if name in directives:
            continue
        module = importlib.import_module(name)
        for member in getattr(module, "__all__", ()):
            documented = f"{name}.{member}" in directives or f"{name}.{member}" in PUBLIC_MODULES
            if not documented:
                missing.append(f"{name}.{member}")
    assert missing == []


def test_the_benchmark_figures_are_the_saved_measurement() -> None:
    # docs/benchmarks.md quotes what plot_overhead.py measured and saved beside the plot.
    plot_overhead = _load(ROOT / "benchmarks" / "plot_overhead.py")
    saved = DOCS / "img" / "engine_overhead.json"
    figures = json.loads(saved.read_text(encoding="utf-8"))
    page = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    quoted = page.split(plot_overhead.MARKER, 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    assert quoted == plot_overhead.describe(figures) + "\n"
    assert (DOCS / "img" / "engine_overhead.png").stat().st_size > 10_000


def test_console_sessions_parse_into_commands_and_expected_lines() -> None:
    session = console_session("$ stagedretry plan check p.toml\nok: ...\n\n$ false\n[exit 1]\n")
    assert session == [
        (0, "stagedretry plan check p.toml", ["ok: ..."]),
        (3, "false", ["[exit 1]"]),
    ]
    with pytest.raises(ValueError, match="must start with"):
        console_session("output before any command\n$ true\n")


def test_the_hook_turns_sphinx_roles_into_optional_cross_references() -> None:
    hooks = _load(DOCS / "hooks.py")
    html = hooks.on_page_content(
        "see :class:<code>Plan</code> and :meth:<code>~stagedretry.Runner.run</code>, "
        "not :class:<code>x y</code>"
    )
    assert '<autoref identifier="stagedretry.Plan" optional><code>Plan</code></autoref>' in html
    assert (
        '<autoref identifier="stagedretry.Runner.run" optional><code>run</code></autoref>' in html
    )
    assert ":class:<code>x y</code>" in html  # not a name: left alone
