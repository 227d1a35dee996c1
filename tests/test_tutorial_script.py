"""The tutorial, pasted in order, is one script that runs, and it installs as the README does.

``tests/test_docs.py`` runs each block in turn and checks what it prints; here the blocks are
joined into one text, as a reader pastes them into a notebook cell or an ``async def main()``,
where a ``from __future__`` import in the middle is a SyntaxError.
"""

from __future__ import annotations

import ast
import asyncio
import re
import textwrap
from pathlib import Path

import pytest
from test_docs import AIOHTTP_SUBCLASS_WARNING, DOCS, ROOT, Block, fenced_blocks

TUTORIAL = DOCS / "tutorial.md"


def _blocks() -> list[Block]:
    return fenced_blocks(TUTORIAL.read_text(encoding="utf-8"), "docs/tutorial.md")


def _script() -> str:
    """The tutorial's Python blocks that run offline, in order, as one text."""
    return "\n".join(b.code for b in _blocks() if b.lang == "python" and b.skip is None)


def _as_main(script: str) -> str:
    return "async def main():\n" + textwrap.indent(script, "    ") + "\n"


def test_the_tutorial_pasted_in_order_compiles_as_one_script() -> None:
    script = _script()
    compile(script, "tutorial.py", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    compile(_as_main(script), "tutorial_main.py", "exec")
    # Every block, skipped ones included, at least compiles in place.
    everything = "\n".join(b.code for b in _blocks() if b.lang == "python")
    compile(everything, "tutorial_all.py", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_a_future_import_in_the_middle_is_caught() -> None:
    # The check above would have caught the tutorial as it was: the output model's file,
    # shown in the middle of the script, began with this import.
    with pytest.raises(SyntaxError):
        compile("x = 1\nfrom __future__ import annotations\n", "t.py", "exec")


@pytest.mark.filterwarnings(AIOHTTP_SUBCLASS_WARNING)
def test_the_tutorial_runs_as_one_async_main(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for block in _blocks():
        if block.file_name is not None:  # plan.toml, which a later block loads
            (tmp_path / block.file_name).write_text(block.code, encoding="utf-8")
    namespace: dict[str, object] = {"__name__": "tutorial"}
    exec(compile(_as_main(_script()), "tutorial_main.py", "exec"), namespace)
    main = namespace["main"]
    assert callable(main)
    asyncio.run(main())
    assert len((tmp_path / "books.out.jsonl").read_text(encoding="utf-8").splitlines()) == 60


def _pip_install(text: str) -> str:
    found = re.search(r"python3 -m pip install (\S+)", text)
    assert found is not None
    return found[1]


def test_the_tutorial_installs_as_the_readme_does() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_bash = next(b for b in _blocks() if b.lang == "bash")
    assert _pip_install(first_bash.code) == _pip_install(readme)
