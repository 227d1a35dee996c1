"""MkDocs hooks for the documentation site (excluded from the site itself).

The site draws its Mermaid diagrams with the renderer stagedretry vendors for its
reports (:mod:`stagedretry.cli.report`), served from the site itself: Material
would otherwise fetch mermaid from a CDN, which an offline reader cannot reach.

The code's docstrings use Sphinx roles (``:class:`Plan```); Markdown renders those as
``:class:<code>Plan</code>``.  This hook turns each into an optional cross-reference
that mkdocs-autorefs resolves to the reference page when the name is documented, and
into plain code otherwise, so the source keeps its conventional roles.
"""

from __future__ import annotations

import html
import re
from typing import Any

from mkdocs.structure.files import File, Files

_ROLE = re.compile(
    r":(?:class|meth|func|attr|mod|exc|data|obj):<code>~?(?P<name>[A-Za-z_][\w.]*)(?P<call>\(\))?</code>"
)


def _autoref(match: re.Match[str]) -> str:
    name = match["name"]
    identifier = name if "." in name else f"stagedretry.{name}"
    shown = html.escape(name.rsplit(".", 1)[-1] + (match["call"] or ""))
    return (
        f'<autoref identifier="{html.escape(identifier)}" optional><code>{shown}</code></autoref>'
    )


def on_page_content(html_text: str, **_: Any) -> str:
    """Replace the rendered Sphinx roles in a page's HTML."""
    return _ROLE.sub(_autoref, html_text)


MERMAID_JS = "assets/javascripts/mermaid.min.js"
"""Where the site serves mermaid (``extra_javascript`` in mkdocs.yml names it)."""


def on_files(files: Files, config: Any, **_: Any) -> Files:
    """Add the vendored mermaid to the site's files."""
    from stagedretry.cli.report import mermaid_js

    files.append(File.generated(config, MERMAID_JS, content=mermaid_js()))
    return files
