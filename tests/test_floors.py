"""The floors hold: the engine imports neither the providers nor the app, and the providers
use only the engine's public API (``DESIGN.md``, "The floors").

Every import statement counts, a lazy one inside a function included.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import stagedretry
import stagedretry.testing

ROOT = Path(__file__).parent.parent
ENGINE = ROOT / "stagedretry"
APP = ENGINE / "cli"
PROVIDERS = ROOT / "strategies"


def _modules(top: Path, *, skip: Path | None = None) -> list[Path]:
    return sorted(p for p in top.rglob("*.py") if skip is None or not p.is_relative_to(skip))


def _imports(path: Path) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line, absolute module, names) of every import in *path*, relative ones resolved."""
    package = list(path.relative_to(ROOT).parent.parts)
    return _imports_in(path.read_text(encoding="utf-8"), package)


def _imports_in(source: str, package: list[str]) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield node.lineno, module, tuple(a.name for a in node.names)


def _under(module: str, top: str) -> bool:
    return module == top or module.startswith(top + ".")


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_the_engine_imports_neither_the_providers_nor_the_app() -> None:
    found = []
    for path in _modules(ENGINE, skip=APP):
        for line, module, names in _imports(path):
            targets = [module, *(f"{module}.{n}" for n in names)]
            if any(_under(t, "strategies") or _under(t, "stagedretry.cli") for t in targets):
                found.append(f"{_where(path, line)} imports {module}")
    assert found == []


def test_the_providers_use_only_the_public_engine_api() -> None:
    public = {
        "stagedretry": set(stagedretry.__all__),
        "stagedretry.testing": set(stagedretry.testing.__all__),
    }
    found = []
    for path in _modules(PROVIDERS):
        for line, module, names in _imports(path):
            if not _under(module, "stagedretry"):
                continue
            if module in public:
                private = [n for n in names if n not in public[module]]
                if private or not names:
                    found.append(f"{_where(path, line)} uses {module}.{private or '*'}")
            elif module != "stagedretry.validators":
                found.append(f"{_where(path, line)} imports {module}")
    assert found == []


@pytest.mark.parametrize(
    ("library", "allowed"),
    [
        ("transitions", ("stagedretry/_machine.py",)),
        # The provider's pytest plugin is the Gemini provider's too, kept outside the package.
        ("google.genai", ("strategies/gemini/", "strategies/pytest_gemini.py")),
    ],
)
def test_one_place_imports_each_library(library: str, allowed: tuple[str, ...]) -> None:
    found = []
    for path in [*_modules(ENGINE), *_modules(PROVIDERS)]:
        where = str(path.relative_to(ROOT))
        for line, module, names in _imports(path):
            targets = [module, *(f"{module}.{n}" for n in names)]
            if any(_under(t, library) for t in targets) and not where.startswith(allowed):
                found.append(f"{_where(path, line)} imports {module}")
    assert found == []


def test_the_scan_sees_lazy_and_relative_imports() -> None:
    """The scan itself: lazy, relative and TYPE_CHECKING imports are all seen."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..cli import _app\n"
        "def f():\n    from .cli import main\n    import strategies.sim\n"
    )
    modules = [m for _, m, _ in _imports_in(source, ["stagedretry", "testing"])]
    assert modules == ["typing", "stagedretry.cli", "stagedretry.testing.cli", "strategies.sim"]
