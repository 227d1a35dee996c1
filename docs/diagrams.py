"""The Mermaid diagrams of the docs, generated from the code (excluded from the site).

A page marks a generated diagram with an HTML comment naming its source, right
before the fenced block::

    <!-- diagram: ladder -->
    ```mermaid
    ...
    ```

``python docs/diagrams.py`` rewrites every marked block from :data:`DIAGRAMS`;
``tests/test_docs.py`` fails when a page's block differs from what the code
generates, so a diagram is never drawn by hand and never goes stale.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import stagedretry as sr

DOCS = Path(__file__).resolve().parent


def _ladder() -> str:
    return sr.Plan.ladder().to_mermaid()


def _loop_back() -> str:
    # The plan of explanation/state-machine.md: a first stage that gives up after two
    # transient errors, and a hot full stage whose invalid answers loop back to repair.
    return sr.Plan(
        stages=[
            sr.Stage("draft", "full", {"temperature": 0.0}, max_attempts=2),
            sr.Stage("repair", "partial", {"temperature": 0.0}),
            sr.Stage("hot", "full", {"temperature": 0.5}, on_invalid="repair"),
        ],
        max_prompts=6,
    ).to_mermaid()


def _flex_fallback() -> str:
    # The plan of explanation/state-machine.md's "Service tiers": Flex first, Standard after
    # a shed request, two transient errors in a row, or with two minutes left.
    return sr.Plan(
        stages=[
            sr.Stage(
                "full_flex",
                params={"service_tier": "flex"},
                max_attempts=2,
                on_shed="full_std",
                on_give_up="full_std",
                expedite=sr.Expedite(within=120.0, to="full_std"),
            ),
            sr.Stage("full_std", params={"service_tier": "standard"}),
            sr.Stage("partial_std", "partial", {"service_tier": "standard"}),
        ],
        max_prompts=4,
        deadline=900.0,
    ).to_mermaid()


DIAGRAMS: dict[str, Callable[[], str]] = {
    "ladder": _ladder,
    "loop_back": _loop_back,
    "flex_fallback": _flex_fallback,
}
"""Each diagram's name (as used in the page marker) and the code that draws it."""

MARKED = re.compile(
    r"(?P<head><!-- diagram: (?P<name>[\w-]+) -->\n```mermaid\n)(?P<body>.*?)(?P<tail>```)",
    re.DOTALL,
)


def marked_diagrams(text: str) -> list[tuple[str, str]]:
    """Each ``(name, body)`` of the marked Mermaid blocks in a page's text."""
    return [(m["name"], m["body"]) for m in MARKED.finditer(text)]


def regenerate(text: str) -> str:
    """*text* with every marked block replaced by what its code draws now."""

    def draw(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in DIAGRAMS:
            raise KeyError(f"unknown diagram {name!r} (known: {', '.join(DIAGRAMS)})")
        return match["head"] + DIAGRAMS[name]() + match["tail"]

    return MARKED.sub(draw, text)


def main() -> int:
    """Rewrite the marked diagrams of every page; print the pages that changed."""
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        new = regenerate(text)
        if new != text:
            page.write_text(new, encoding="utf-8")
            print(f"updated {page.relative_to(DOCS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
