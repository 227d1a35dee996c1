"""The docs site draws its Mermaid diagrams, offline: the state-machine page in Chromium.

The site is built once (``mkdocs build --strict``, a few seconds) and served on
loopback; Chromium has no other network, so a renderer fetched from a CDN
would fail and show the diagram's source instead.  Material draws each diagram
into a closed shadow root, which only the DevTools protocol can look into.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._chromium import assert_not_blank, chromium

ROOT = Path(__file__).resolve().parents[2]
PAGE = "explanation/state-machine/"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The built site, served on a loopback port: its base URL."""
    folder = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(folder)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _svgs_in_mermaid(node: dict[str, Any], inside: bool = False) -> int:
    """SVG elements under a ``.mermaid`` element, shadow roots included."""
    attributes = node.get("attributes", [])
    classes = dict(zip(attributes[::2], attributes[1::2], strict=False)).get("class", "")
    inside = inside or "mermaid" in classes.split()
    found = int(inside and node.get("nodeName") == "svg")
    for child in [*node.get("children", ()), *node.get("shadowRoots", ())]:
        found += _svgs_in_mermaid(child, inside)
    return found


def test_the_state_machine_page_draws_its_diagrams(site: str) -> None:
    with chromium() as browser:
        # Material swaps each fenced block for a drawn one: none is left as source.
        loaded = browser.load(
            site + PAGE,
            "document.querySelectorAll('pre.mermaid').length === 0"
            " && document.querySelectorAll('div.mermaid').length",
        )
        assert loaded.errors == ()
        assert loaded.value == 3  # the ladder, the loop back, the Flex fallback
        document = browser.call("DOM.getDocument", depth=-1, pierce=True)
        assert _svgs_in_mermaid(document["root"]) >= 3
        assert_not_blank(browser.screenshot("div.mermaid"), colours=16, inked=0.02)
